//! Labels and label selectors, validated and matched as Kubernetes does
//! (apimachinery's `labels` and `LabelSelectorAsSelector`).

use std::collections::BTreeMap;

use super::{types::LabelSelector, PolicyError};

pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries with its own name (Kubernetes 1.21+).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn bad(what: String) -> PolicyError {
    PolicyError::Invalid(what)
}

/// `[prefix/]name`: the name at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric; the prefix a DNS subdomain.
pub fn check_key(key: &str) -> Result<(), PolicyError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        check_dns_subdomain(p).map_err(|e| bad(format!("label key {key:?}: prefix {e}")))?;
    }
    if !is_label_token(name) || name.is_empty() {
        return Err(bad(format!(
            "label key {key:?}: the name must be 1-63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        )));
    }
    Ok(())
}

/// At most 63 characters of `[A-Za-z0-9._-]`, starting and ending alphanumeric (or empty).
pub fn check_value(key: &str, value: &str) -> Result<(), PolicyError> {
    if !is_label_token(value) {
        return Err(bad(format!(
            "label {key}={value:?}: the value must be at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric"
        )));
    }
    Ok(())
}

pub fn check_labels(labels: &Labels) -> Result<(), PolicyError> {
    for (k, v) in labels {
        check_key(k)?;
        check_value(k, v)?;
    }
    Ok(())
}

fn is_label_token(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.is_empty()
        || (s.len() <= 63
            && s.starts_with(alnum)
            && s.ends_with(alnum)
            && s.chars().all(|c| alnum(c) || "-_.".contains(c)))
}

/// A DNS-1123 subdomain: at most 253 characters, dot-separated labels of
/// `[a-z0-9-]`, each starting and ending alphanumeric.
pub fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 || !s.split('.').all(is_dns_label) {
        return Err(format!(
            "{s:?} is not a DNS-1123 subdomain (lower case alphanumerics, '-' and '.')"
        ));
    }
    Ok(())
}

/// A DNS-1123 label: at most 63 characters of `[a-z0-9-]`, starting and ending
/// alphanumeric (namespace names).
pub fn check_dns_label(s: &str) -> Result<(), String> {
    if !is_dns_label(s) {
        return Err(format!(
            "{s:?} is not a DNS-1123 label (at most 63 lower case alphanumerics or '-')"
        ));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(ok)
        && s.ends_with(ok)
        && s.chars().all(|c| ok(c) || c == '-')
}

impl LabelSelector {
    /// Refuses what the API server refuses: bad keys and values, unknown operators,
    /// `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values.
    pub fn validate(&self, at: &str) -> Result<(), PolicyError> {
        let at = |e: PolicyError| bad(format!("{at}: {e}"));
        if let Some(labels) = &self.match_labels {
            check_labels(labels).map_err(at)?;
        }
        for r in self.match_expressions.iter().flatten() {
            check_key(&r.key).map_err(at)?;
            let values = r.values.as_deref().unwrap_or_default();
            match r.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(at(bad(format!(
                        "operator {} on {:?} needs values",
                        r.operator, r.key
                    ))));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(at(bad(format!(
                        "operator {} on {:?} takes no values",
                        r.operator, r.key
                    ))));
                }
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                other => {
                    return Err(at(bad(format!(
                        "{other:?} is not a valid selector operator (In, NotIn, Exists, DoesNotExist)"
                    ))));
                }
            }
            for v in values {
                check_value(&r.key, v).map_err(at)?;
            }
        }
        Ok(())
    }

    /// Whether `labels` satisfy every requirement (an empty selector matches all).
    pub fn matches(&self, labels: &Labels) -> bool {
        let by_labels = self
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        by_labels
            && self.match_expressions.iter().flatten().all(|r| {
                let has = labels.get(&r.key);
                let listed = |v: &String| r.values.iter().flatten().any(|x| x == v);
                match r.operator.as_str() {
                    "In" => has.is_some_and(listed),
                    "NotIn" => !has.is_some_and(listed),
                    "Exists" => has.is_some(),
                    "DoesNotExist" => has.is_none(),
                    _ => false,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::Requirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(LabelSelector::default().matches(&l), "empty selects all");
        let sel = |e: Requirement| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![e]),
        };
        assert!(sel(expr("app", "In", &["web", "db"])).matches(&l));
        assert!(!sel(expr("app", "In", &["db"])).matches(&l));
        assert!(sel(expr("app", "NotIn", &["db"])).matches(&l));
        assert!(
            sel(expr("zone", "NotIn", &["a"])).matches(&l),
            "NotIn matches a missing label"
        );
        assert!(sel(expr("tier", "Exists", &[])).matches(&l));
        assert!(!sel(expr("tier", "DoesNotExist", &[])).matches(&l));
        let both = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![expr("tier", "In", &["back"])]),
        };
        assert!(!both.matches(&l), "every requirement must hold");
    }

    #[test]
    fn bad_selectors_are_refused_with_the_reason() {
        let sel = |e: Requirement| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![e]),
        };
        for (s, want) in [
            (
                sel(expr("app", "Equals", &["x"])),
                "not a valid selector operator",
            ),
            (sel(expr("app", "In", &[])), "needs values"),
            (sel(expr("app", "Exists", &["x"])), "takes no values"),
            (sel(expr("-bad", "Exists", &[])), "label key"),
        ] {
            let e = s.validate("spec.podSelector").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("spec.podSelector"), "{e}");
        }
        assert!(check_key("example.com/app").is_ok());
        assert!(check_key("Example.com/app").is_err());
        assert!(check_value("app", "").is_ok());
        assert!(check_value("app", "a b").is_err());
    }
}
