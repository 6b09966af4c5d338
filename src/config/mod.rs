//! Configuration of the callbridge daemon: what `callbridge.toml` may contain, how
//! `CALLBRIDGE__…` environment variables override it, and how the result is checked.
//!
//! Layering is done by the `config` crate: the TOML file first, then one override per
//! environment variable (`CALLBRIDGE__CRM__API_KEY`, `CALLBRIDGE__PBX__0__SECRET`,
//! `CALLBRIDGE__EMPLOYEES__EXTENSIONS__101=3`, `CALLBRIDGE__EMPLOYEES__SENIOR=7,8`).
//! Section and key names from the environment are lower-cased; extension numbers keep
//! their case. Environment values are strings, so numbers may be given as strings, and
//! an empty value counts as "not set" (for an extension: not mapped).
//!
//! The merged tree is then walked key by key with small typed readers. Every problem is
//! collected with the key it concerns (`pbx[0].port: expected …`), so `check-config`
//! shows all of them at once; unknown keys are returned as warnings so a typo is visible.
//! Secrets are wrapped in [`Secret`] and never appear in a problem, a warning, `Debug`
//! output or [`Config::summary`].
//!
//! The documented example for administrators is `conf/callbridge.toml`.

//!
//! The files, in the order a configuration passes through them:
//! - `loading`: the file or string, the environment layered over it ([`load`],
//!   [`load_with_env`], [`from_toml_str`], [`load_store_url`]);
//! - `env`: a `CALLBRIDGE__…` variable name turned into the key it overrides;
//! - `sections`: each section of the file read into its part of [`Config`];
//! - `checker`: the typed readers the sections use, which collect [`ConfigProblem`]s;
//! - `defaults`: what an absent key means;
//! - `types`: the [`Config`] tree the daemon receives, and [`Secret`];
//! - `problems`: [`ConfigProblem`] and [`ConfigErrors`], one line per problem;
//! - `summary`: the `check-config` lines, without secrets.
//!
//! The rest of the crate names everything as `crate::config::…`: the files are private
//! and this module re-exports what they offer.

mod checker;
mod creatio;
mod defaults;
mod env;
mod loading;
mod problems;
mod sections;
mod summary;
mod types;

pub use defaults::*;
pub use env::ENV_PREFIX;
pub use loading::{from_toml_str, load, load_store_url, load_with_env};
pub use problems::{ConfigErrors, ConfigProblem};
pub use summary::redact_url_password;
pub use types::{
    Config, CreatioConfig, CrmConfig, CrmKind, DaemonConfig, EmployeesConfig, HttpConfig,
    LogConfig, LogFormat, MatrixConfig, PanelConfig, PbxConfig, PbxKind, Secret, StoreConfig,
};

#[cfg(test)]
mod tests;
