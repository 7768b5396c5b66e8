//! netcore's node agent, its local API, and the clients of that API (CLI, CNI plugin).

pub mod agent;
pub mod api;
pub mod backend;
pub mod cli;
pub mod cni;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod flows;
pub mod ipam;
pub mod mac;
pub mod maps;
pub mod masq;
pub mod metrics;
pub mod monitor;
pub mod netlink;
pub mod netns;
pub mod pod;
pub mod pod_check;
pub mod policy;
pub mod reset;
pub mod state;
pub mod store;
pub mod sysctl;
