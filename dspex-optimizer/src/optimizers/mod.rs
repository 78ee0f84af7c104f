//! Optimizers ("teleprompters"), after DSPy's published algorithms. Deterministic for a seed.

mod bootstrap;
mod labeled;
mod random_search;

pub use bootstrap::BootstrapFewShot;
pub use labeled::LabeledFewShot;
pub use random_search::{Candidate, RandomSearch, SearchReport};
