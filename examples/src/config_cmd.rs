//! `foundation config check`: validate configuration the way a node would load it;
//! `defaults` and `reference`: what every key is and does.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use foundation_core::config::ConfigLoader;

/// Configuration subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the config file (if any) and FOUNDATION_* variables, validate, and print the
    /// effective configuration as TOML. Exits with status 2 if anything is wrong.
    Check,
    /// Print every configuration key with its default value.
    Defaults,
    /// Print the configuration reference as Markdown: every key with its type, default and
    /// meaning (docs/guide/configuration.md is this output).
    Reference,
}

pub fn run(file: Option<PathBuf>, command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check => {
            let mut loader = ConfigLoader::new();
            if let Some(path) = &file {
                loader = loader.file(path);
            }
            match loader.env().load() {
                Ok(config) => {
                    print!("{}", toml::to_string(&config)?);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        ConfigCommand::Defaults => {
            print!("{}", toml::to_string(&foundation_core::FoundationConfig::default())?);
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Reference => {
            print!("{}", foundation_core::config::reference_markdown());
            Ok(ExitCode::SUCCESS)
        }
    }
}
