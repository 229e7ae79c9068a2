//! Patient-facing texts and the system prompt, as minijinja templates in `prompts/`.
//!
//! The deployment's region supplies emergency and crisis numbers once (`prompts/regions.toml`), so
//! no rule or template hard-codes a number.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use minijinja::Environment;
use serde::{Deserialize, Serialize};

/// Where the deployment is, which decides the numbers patients are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    #[default]
    Uk,
    Us,
    Eu,
}

impl Region {
    fn key(self) -> &'static str {
        match self {
            Self::Uk => "uk",
            Self::Us => "us",
            Self::Eu => "eu",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: cannot read prompt file")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid TOML: {reason}")]
    Toml { path: PathBuf, reason: String },
    #[error("prompts/regions.toml has no table for region `{0}`")]
    MissingRegion(&'static str),
    #[error("template `{name}` is broken: {reason}")]
    Template { name: String, reason: String },
    #[error("no guidance template `{name}` (looked for prompts/guidance/{name}.en.j2)")]
    MissingGuidance { name: String },
}

/// Loaded templates and the region's numbers.
pub struct Prompts {
    environment: Environment<'static>,
    numbers: BTreeMap<String, String>,
}

impl Prompts {
    /// Loads `prompts/` for a region.
    ///
    /// # Errors
    /// Unreadable files, a region missing from `regions.toml`, or a template that does not parse.
    pub fn load(dir: &Path, region: Region) -> Result<Self, PromptError> {
        let regions_path = dir.join("regions.toml");
        let raw = read(&regions_path)?;
        let mut regions: BTreeMap<String, BTreeMap<String, String>> = toml::from_str(&raw)
            .map_err(|error| PromptError::Toml {
                path: regions_path.clone(),
                reason: error.to_string(),
            })?;
        let numbers = regions
            .remove(region.key())
            .ok_or(PromptError::MissingRegion(region.key()))?;
        let mut environment = Environment::new();
        environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let mut templates = Vec::new();
        collect_templates(dir, dir, &mut templates)?;
        for (name, path) in templates {
            let source = read(&path)?;
            environment
                .add_template_owned(name.clone(), source.trim_end().to_owned())
                .map_err(|error| PromptError::Template {
                    name,
                    reason: error.to_string(),
                })?;
        }
        Ok(Self {
            environment,
            numbers,
        })
    }

    /// Renders guidance `name` in `language` (falling back to English) with a rule's advice.
    ///
    /// # Errors
    /// No such template, or one that uses a name the region does not define.
    /// Whether `name` has a template in `language` (otherwise the English one is used).
    pub fn has_guidance(&self, name: &str, language: &str) -> bool {
        self.environment
            .get_template(&format!("guidance/{name}.{language}.j2"))
            .is_ok()
    }

    pub fn guidance(
        &self,
        name: &str,
        language: &str,
        advice: &str,
    ) -> Result<String, PromptError> {
        let localized = format!("guidance/{name}.{language}.j2");
        let english = format!("guidance/{name}.en.j2");
        let template = self
            .environment
            .get_template(&localized)
            .or_else(|_| self.environment.get_template(&english))
            .map_err(|_| PromptError::MissingGuidance {
                name: name.to_owned(),
            })?;
        let mut context = self.numbers.clone();
        context.insert(
            "advice".into(),
            advice.trim().trim_end_matches('.').to_owned()
                + if advice.trim().is_empty() { "" } else { "." },
        );
        template
            .render(&context)
            .map_err(|error| PromptError::Template {
                name: localized,
                reason: error.to_string(),
            })
    }

    /// Renders any template under `prompts/` with the region's numbers and extra values.
    ///
    /// # Errors
    /// No such template, or one that uses an undefined name.
    pub fn render(
        &self,
        name: &str,
        extra: &BTreeMap<String, String>,
    ) -> Result<String, PromptError> {
        let template =
            self.environment
                .get_template(name)
                .map_err(|error| PromptError::Template {
                    name: name.into(),
                    reason: error.to_string(),
                })?;
        let mut context = self.numbers.clone();
        context.extend(
            extra
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        template
            .render(&context)
            .map_err(|error| PromptError::Template {
                name: name.into(),
                reason: error.to_string(),
            })
    }
}

fn read(path: &Path) -> Result<String, PromptError> {
    std::fs::read_to_string(path).map_err(|source| PromptError::Read {
        path: path.to_owned(),
        source,
    })
}

fn collect_templates(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), PromptError> {
    let entries = std::fs::read_dir(dir).map_err(|source| PromptError::Read {
        path: dir.to_owned(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_templates(root, &path, out)?;
        } else if path.extension().is_some_and(|extension| extension == "j2") {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            out.push((name, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(region: Region) -> Prompts {
        Prompts::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts"),
            region,
        )
        .expect("shipped prompts load")
    }

    #[test]
    fn the_region_decides_the_emergency_number() {
        let uk = shipped(Region::Uk)
            .guidance("emergency", "en", "")
            .expect("renders");
        let us = shipped(Region::Us)
            .guidance("emergency", "en", "")
            .expect("renders");
        assert!(uk.contains("999") && !uk.contains("911"));
        assert!(us.contains("911") && !us.contains("999"));
    }

    #[test]
    fn unknown_languages_fall_back_to_english_and_advice_is_included() {
        let prompts = shipped(Region::Eu);
        assert!(!prompts.has_guidance("emergency", "km"));
        let text = prompts
            .guidance("emergency", "km", "Use your auto-injector")
            .expect("renders");
        assert!(text.starts_with("This may be") && text.contains("112"));
        assert!(text.contains("Use your auto-injector."));
    }

    #[test]
    fn every_language_with_triggers_has_its_own_guidance() {
        let prompts = shipped(Region::Eu);
        for (language, opening) in [
            ("fr", "Ceci peut"),
            ("pt", "Isto pode"),
            ("de", "Dies kann"),
            ("it", "Potrebbe"),
            ("nl", "Dit kan"),
            ("pl", "To może"),
        ] {
            for name in ["emergency", "urgent", "crisis", "support", "nurse"] {
                assert!(prompts.has_guidance(name, language), "{name}.{language}");
            }
            let text = prompts
                .guidance("emergency", language, "")
                .expect("renders");
            assert!(text.starts_with(opening) && text.contains("112"), "{text}");
        }
    }
}
