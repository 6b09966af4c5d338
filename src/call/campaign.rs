//! Web-analytics (UTM) data a call carries: the dialplan of a call-tracking setup puts
//! it into channel variables, and the CRM's records of a new caller get it.

use serde::{Deserialize, Serialize};

/// Where the caller came from, as the PBX's dialplan was told (call tracking puts UTM
/// tags into channel variables).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
}

impl Campaign {
    pub fn is_empty(&self) -> bool {
        self == &Campaign::default()
    }
}

/// Which channel variables carry the campaign data (`[[pbx]] utm_variables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignVariables {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub content: String,
    pub term: String,
}

impl Default for CampaignVariables {
    fn default() -> Self {
        CampaignVariables {
            source: "UTM_SOURCE".into(),
            medium: "UTM_MEDIUM".into(),
            campaign: "UTM_CAMPAIGN".into(),
            content: "UTM_CONTENT".into(),
            term: "UTM_TERM".into(),
        }
    }
}

impl CampaignVariables {
    pub fn names(&self) -> [&str; 5] {
        [
            &self.source,
            &self.medium,
            &self.campaign,
            &self.content,
            &self.term,
        ]
    }

    /// Records `value` when `name` is one of the campaign variables; returns whether it was.
    pub fn take(&self, campaign: &mut Campaign, name: &str, value: &str) -> bool {
        let slot = if name == self.source {
            &mut campaign.source
        } else if name == self.medium {
            &mut campaign.medium
        } else if name == self.campaign {
            &mut campaign.campaign
        } else if name == self.content {
            &mut campaign.content
        } else if name == self.term {
            &mut campaign.term
        } else {
            return false;
        };
        let value = value.trim();
        *slot = (!value.is_empty()).then(|| value.to_string());
        true
    }
}
