//! granule: a KVM virtual machine monitor that knows the host mapping size behind every
//! guest-physical range. This library holds the VMM; `main.rs` is the CLI on top.

pub mod allocators;
pub mod cli;
pub mod console;
pub mod devices;
pub mod footprint;
pub mod kernel_payload;
pub mod kvm;
pub mod linux;
pub mod log_filter;
pub mod memory;
pub mod observe;
pub mod plan_command;
pub mod probe;
pub mod programs;
pub mod progress;
pub mod report;
pub mod seccomp;
pub mod signals;
pub mod stage2;
pub mod stress;
pub mod stress_command;
pub mod units;
pub mod user_io;
pub mod vcpu;
pub mod vfio;
pub mod vm;
pub mod warn_once;
