//! DSPy-style programs (signatures, predictors, examples, metrics, evaluation, optimizers) and
//! their optimization distributed across a Foundation cluster by a coordinator and evaluation
//! workers that survive node loss.
//!
//! Not built yet: this crate is planned in the project's issue 6 (optimizer).
