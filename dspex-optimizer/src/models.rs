//! Language models by name. Closures and clients never cross nodes: every node registers its
//! models under the names that run specs and programs refer to.

use std::collections::BTreeMap;
use std::sync::Arc;

use foundation_actors::providers::{LanguageModel, LmError};

/// Models by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct LanguageModels {
    models: BTreeMap<String, Arc<dyn LanguageModel>>,
}

impl LanguageModels {
    /// No models.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `model` as `name` (replacing any other of that name).
    pub fn register(mut self, name: impl Into<String>, model: Arc<dyn LanguageModel>) -> Self {
        self.models.insert(name.into(), model);
        self
    }

    /// The model called `name`, or an error that names it and says what is registered.
    pub fn get(&self, name: &str) -> Result<Arc<dyn LanguageModel>, LmError> {
        self.models.get(name).cloned().ok_or_else(|| LmError::Unknown {
            what: "model".into(),
            name: format!("{name} (registered: {})", self.names().collect::<Vec<_>>().join(", ")),
        })
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for LanguageModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
