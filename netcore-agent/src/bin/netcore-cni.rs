//! The CNI plugin binary: runtimes execute it with `CNI_*` variables and the network
//! config on stdin. Everything lives in `netcore_agent::cni`.

fn main() -> std::process::ExitCode {
    netcore_agent::cni::main()
}
