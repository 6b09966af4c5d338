//! Who is who: which CRM user an extension belongs to, who the senior managers are, and
//! which CRM users are managers (the missed-call pop-up goes to all of them). Built from
//! `[employees]` and from what the CRM says (its telephony codes, its users); the
//! configuration wins where the two disagree. Pure data: the daemon reads the CRM's side
//! and hands it in.

use std::collections::BTreeMap;

/// A CRM user id.
pub type UserId = crate::ids::CrmId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// From `[employees.extensions]`: always right.
    configured: BTreeMap<String, UserId>,
    /// From the CRM (the telephony module's additional codes, the users' codes).
    synced: BTreeMap<String, UserId>,
    senior: Vec<UserId>,
    /// Active CRM users who are managers.
    managers: Vec<UserId>,
}

/// An extension the CRM maps to another user than the configuration does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub extension: String,
    pub configured: UserId,
    pub crm: UserId,
}

impl Directory {
    pub fn new(configured: BTreeMap<String, UserId>, senior: Vec<UserId>) -> Self {
        Directory {
            configured,
            senior,
            ..Directory::default()
        }
    }

    /// Takes the CRM's extension codes (replacing the last ones taken); returns where
    /// they disagree with the configuration, which keeps its say.
    pub fn sync_codes(
        &mut self,
        codes: impl IntoIterator<Item = (String, UserId)>,
    ) -> Vec<Conflict> {
        self.synced = codes.into_iter().collect();
        self.synced
            .iter()
            .filter_map(|(ext, crm)| {
                let configured = *self.configured.get(ext)?;
                (configured != *crm).then(|| Conflict {
                    extension: ext.clone(),
                    configured,
                    crm: *crm,
                })
            })
            .collect()
    }

    /// Takes the CRM's list of active managers.
    pub fn sync_managers(&mut self, managers: impl IntoIterator<Item = UserId>) {
        let mut managers: Vec<UserId> = managers.into_iter().collect();
        managers.sort_unstable();
        managers.dedup();
        self.managers = managers;
    }

    /// The CRM user an extension belongs to.
    pub fn user_of(&self, extension: &str) -> Option<UserId> {
        self.configured
            .get(extension)
            .or_else(|| self.synced.get(extension))
            .copied()
    }

    /// Senior managers, in configured order; the first one is given escalation tasks.
    pub fn senior(&self) -> &[UserId] {
        &self.senior
    }

    /// Everyone the missed-call pop-up goes to: the CRM's managers and the seniors.
    pub fn all_managers(&self) -> Vec<UserId> {
        let mut all: Vec<UserId> = self
            .managers
            .iter()
            .chain(&self.senior)
            .chain(self.configured.values())
            .chain(self.synced.values())
            .copied()
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Every extension mapped to a user (configuration first), for registering the
    /// integration's codes with the CRM.
    pub fn codes(&self) -> BTreeMap<String, UserId> {
        let mut all = self.synced.clone();
        all.extend(self.configured.iter().map(|(e, u)| (e.clone(), *u)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> UserId {
        UserId::from(n)
    }

    fn configured() -> Directory {
        Directory::new(
            [("101".to_string(), id(3)), ("102".to_string(), id(4))].into(),
            vec![id(7)],
        )
    }

    #[test]
    fn configuration_wins_over_the_crm() {
        let mut d = configured();
        let conflicts = d.sync_codes([("101".to_string(), id(9)), ("103".to_string(), id(5))]);
        assert_eq!(
            conflicts,
            vec![Conflict {
                extension: "101".into(),
                configured: id(3),
                crm: id(9)
            }]
        );
        assert_eq!(d.user_of("101"), Some(id(3)));
        assert_eq!(
            d.user_of("103"),
            Some(id(5)),
            "the CRM fills what config leaves out"
        );
        assert_eq!(d.user_of("104"), None);
        assert_eq!(d.codes().get("101"), Some(&id(3)));
    }

    #[test]
    fn all_managers_include_seniors_and_mapped_users() {
        let mut d = configured();
        d.sync_managers([id(8), id(3), id(8)]);
        assert_eq!(d.all_managers(), vec![id(3), id(4), id(7), id(8)]);
        assert_eq!(d.senior(), &[id(7)]);
    }
}
