//! Everything both sides of netcore's data path must agree on: map keys and values
//! (`#[repr(C)]`, explicit padding, size-checked), map and program names, pin paths and
//! the numbered reasons the programs count. Nothing here may depend on `std`.
#![no_std]

pub mod config;
pub mod conntrack;
pub mod counters;
pub mod endpoint;
pub mod flow;
pub mod fragment;
pub mod monitor;
pub mod node;
pub mod pin;
pub mod policy;
pub mod service;
pub mod socket;
pub mod wire;

/// Implements `aya::Pod` for map types on the userspace side only.
#[macro_export]
macro_rules! user_pod {
    ($($t:ty),*) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: the type is `#[repr(C)]`, has no implicit padding and is `bytemuck::Pod`.
            unsafe impl aya::Pod for $t {}
        )*
    };
}
