use clap::Parser;

fn main() -> std::process::ExitCode {
    netcore_agent::cli::main(netcore_agent::cli::Cli::parse())
}
