//! The seeded generator optimizers draw from: [`foundation_core::random::SplitMix64`], so that
//! the same seed gives the same sample, shuffle and program in every process, which is what
//! makes optimization repeatable and distributable (one generator for the workspace: the
//! nemesis's schedules draw from the same stream).

pub use foundation_core::random::SplitMix64 as Rng;
