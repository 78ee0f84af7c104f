//! Optimizers ("teleprompters"), after DSPy's published algorithms. Deterministic for a seed.

mod bootstrap;
mod instructions;
mod labeled;
mod random_search;

pub use bootstrap::BootstrapFewShot;
pub use instructions::{
    InstructionReport, InstructionSearch, MAX_LISTED_VALUES, Trial, propose_instructions,
};
pub use labeled::LabeledFewShot;
pub use random_search::{Candidate, RandomSearch, SearchReport};
