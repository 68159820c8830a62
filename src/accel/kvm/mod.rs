//! The KVM accelerator.
