//! `CALLBRIDGE__…` environment variables as overrides of the file: each variable name
//! becomes a path of the `config` crate (`CALLBRIDGE__PBX__0__SECRET` → `pbx[0].secret`)
//! and the key shown in messages, or a problem naming the variable when it cannot.

use super::problems::ConfigProblem;

/// Environment variables starting with this prefix override keys of the file.
pub const ENV_PREFIX: &str = "CALLBRIDGE__";
const ENV_SEPARATOR: &str = "__";
/// Largest array index an environment variable may name (a typo such as
/// `CALLBRIDGE__PBX__99999999__SECRET` must not allocate a huge array).
const MAX_ENV_INDEX: usize = 999;

/// One `CALLBRIDGE__…` variable turned into a config-crate path.
pub(super) struct EnvOverride {
    pub(super) var: String,
    /// Path for `set_override`, e.g. `pbx[0].secret`.
    pub(super) path: String,
    /// The same key as shown in messages, e.g. `employees.extensions."101"`.
    pub(super) key: String,
    pub(super) value: String,
}

pub(super) fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> (Vec<EnvOverride>, Vec<ConfigProblem>) {
    let mut overrides = Vec::new();
    let mut problems = Vec::new();
    for (var, value) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        match env_path(rest) {
            Ok((path, key)) => overrides.push(EnvOverride {
                var,
                path,
                key,
                value,
            }),
            Err(message) => problems.push(ConfigProblem::new(var, message)),
        }
    }
    overrides.sort_by(|a, b| a.var.cmp(&b.var));
    problems.sort_by(|a, b| a.key.cmp(&b.key));
    (overrides, problems)
}

/// `PBX__0__SECRET` → (`pbx[0].secret`, `pbx[0].secret`);
/// `EMPLOYEES__EXTENSIONS__101` → (`employees.extensions.101`, `employees.extensions."101"`).
fn env_path(rest: &str) -> Result<(String, String), String> {
    let segments: Vec<&str> = rest.split(ENV_SEPARATOR).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "not a valid override name; expected {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}CRM__API_KEY"
        ));
    }
    if let Some(bad) = segments.iter().find(|s| {
        !s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(format!(
            "{bad:?} cannot be part of a key (use letters, digits, _ and -)"
        ));
    }
    // `segments[..at]` named the array; `segments[at]` must be its index.
    let index = |at: usize, what: &str| -> Result<usize, String> {
        let seg = segments[at];
        match seg.parse::<usize>() {
            Ok(i) if seg.chars().all(|c| c.is_ascii_digit()) && i <= MAX_ENV_INDEX => Ok(i),
            _ => Err(format!(
                "expected {what} index (0 for the first) after {ENV_PREFIX}{}, got {seg:?}",
                segments[..at].join(ENV_SEPARATOR)
            )),
        }
    };

    let section = segments[0].to_ascii_lowercase();
    let mut path = section.clone();
    let mut key = section.clone();
    let mut tail = &segments[1..];
    match section.as_str() {
        "pbx" => {
            let Some((_, more)) = tail.split_first() else {
                return Err(format!(
                    "names no [[pbx]] entry; use {ENV_PREFIX}PBX__0__KEY (0 = the first [[pbx]] section)"
                ));
            };
            let i = index(1, "a [[pbx]]")?;
            path.push_str(&format!("[{i}]"));
            key.push_str(&format!("[{i}]"));
            tail = more;
        }
        "employees" => {
            if let Some((first, more)) = tail.split_first() {
                let name = first.to_ascii_lowercase();
                path.push_str(&format!(".{name}"));
                key.push_str(&format!(".{name}"));
                tail = more;
                match (name.as_str(), tail.split_first()) {
                    ("extensions", Some((ext, more))) => {
                        // Map key: extension numbers/names keep their case.
                        path.push_str(&format!(".{ext}"));
                        key.push_str(&format!(".{ext:?}"));
                        tail = more;
                    }
                    ("senior", Some((_, more))) => {
                        let i = index(2, "a senior")?;
                        path.push_str(&format!("[{i}]"));
                        key.push_str(&format!("[{i}]"));
                        tail = more;
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    for seg in tail {
        let seg = seg.to_ascii_lowercase();
        path.push_str(&format!(".{seg}"));
        key.push_str(&format!(".{seg}"));
    }
    Ok((path, key))
}
