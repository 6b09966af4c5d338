//! The Creatio side of the test harness: the real daemon with `[crm] kind = "creatio"`
//! against the Creatio simulator, fed by the AMI peer or the FreeSWITCH event socket.

use std::time::Duration;

use callbridge::daemon::{self, Running};
use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::creatio::{default_employees, CreatioSim, CreatioSimOptions};
use callbridge::tools::sim::esl::{EslSim, EslSimOptions};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ami_options, esl_fixture, fixture, AMI_SECRET, ESL_PASSWORD};

/// Which PBX the calls come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Asterisk,
    FreeSwitch,
}

/// The employees' contact ids in the simulator.
pub fn anna() -> String {
    default_employees()[0].contact.clone()
}
pub fn boris() -> String {
    default_employees()[1].contact.clone()
}
pub fn senior() -> String {
    default_employees()[2].contact.clone()
}

/// The configuration for a daemon talking to `crm` (forms login) and one PBX.
pub fn creatio_config(side: Side, pbx_port: u16, crm_url: &str, db: &std::path::Path) -> String {
    let pbx = match side {
        Side::Asterisk => format!(
            "kind = \"asterisk\"\nhost = \"127.0.0.1\"\nport = {pbx_port}\nusername = \"callbridge\"\nsecret = \"{AMI_SECRET}\""
        ),
        Side::FreeSwitch => format!(
            "kind = \"freeswitch\"\nhost = \"127.0.0.1\"\nport = {pbx_port}\nsecret = \"{ESL_PASSWORD}\""
        ),
    };
    format!(
        r#"
[store]
url = "sqlite://{db}"
[http]
listen = "127.0.0.1:0"
link_secret = "test-link-secret"
[[pbx]]
name = "office"
{pbx}
[crm]
kind = "creatio"
url = "{crm_url}"
login = "callbridge"
password = "sim-password"
timeout = "2s"
[creatio]
missed_calls_queue = "Missed calls"
[employees]
senior = ["{senior}"]
[employees.extensions]
"101" = "{anna}"
"102" = "{boris}"
[daemon]
shutdown_grace = "2s"
"#,
        db = db.display(),
        senior = senior(),
        anna = anna(),
        boris = boris(),
    )
}

pub struct CreatioHarness {
    pub side: Side,
    pub ami: AmiSim,
    pub esl: EslSim,
    pub crm: CreatioSim,
    pub running: Running,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    daemon: JoinHandle<anyhow::Result<()>>,
}

impl CreatioHarness {
    pub async fn start(side: Side) -> CreatioHarness {
        Self::start_custom(side, CreatioSimOptions::default(), |t| t).await
    }

    /// Starts with the simulator's `options` and the configuration as `edit` changes it.
    pub async fn start_custom(
        side: Side,
        options: CreatioSimOptions,
        edit: impl FnOnce(String) -> String,
    ) -> CreatioHarness {
        if let Ok(level) = std::env::var("CALLBRIDGE_TEST_LOG") {
            callbridge::ops::logging::init(&level, false);
        }
        let ami = AmiSim::start(ami_options()).await.expect("AMI sim");
        let esl = EslSim::start(EslSimOptions {
            password: ESL_PASSWORD.into(),
        })
        .await
        .expect("ESL sim");
        let crm = CreatioSim::start(options).await.expect("Creatio sim");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = match side {
            Side::Asterisk => ami.addr().port(),
            Side::FreeSwitch => esl.addr().port(),
        };
        let toml = edit(creatio_config(
            side,
            port,
            &crm.base_url(),
            &dir.path().join("cb.db"),
        ));
        let cfg = callbridge::config::from_toml_str(&toml).expect("config");
        let shutdown = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let daemon = tokio::spawn(daemon::run(cfg, shutdown.clone(), Some(tx)));
        let running = rx.await.expect("daemon ready");
        let connected = match side {
            Side::Asterisk => ami.wait_for_logins(1, Duration::from_secs(10)).await,
            Side::FreeSwitch => esl.wait_for_logins(1, Duration::from_secs(10)).await,
        };
        assert!(connected, "the daemon connects to the PBX");
        CreatioHarness {
            side,
            ami,
            esl,
            crm,
            running,
            dir,
            shutdown,
            daemon,
        }
    }

    /// Plays a recording of this side's PBX (`iax2/inbound_answered` or
    /// `inbound_answered`) and waits until everything it caused reached Creatio.
    pub async fn play(&self, name: &str) {
        match self.side {
            Side::Asterisk => self.ami.play(&fixture(name), 20.0).await,
            Side::FreeSwitch => self.esl.play(&esl_fixture(name), 20.0).await,
        }
        self.settle().await;
    }

    /// Waits until every call ended and nothing is pending; nothing may be dead.
    pub async fn settle(&self) {
        super::outbox_settled(&self.running.store).await;
        let dead = self
            .running
            .store
            .list_actions(callbridge::store::ActionFilter::Dead, 10)
            .await
            .expect("dead");
        assert!(dead.is_empty(), "nothing refused: {dead:#?}");
    }

    /// A contact with `number` (typed as a person would), owned by `owner`; its id.
    pub fn seed_contact(&self, name: &str, number: &str, owner: &str) -> String {
        let id = self
            .crm
            .insert("Contact", json!({"Name": name, "OwnerId": owner}))
            .expect("seed contact");
        self.crm
            .insert(
                "ContactCommunication",
                json!({"ContactId": id, "Number": number,
                       "CommunicationTypeId": "d4a2dc80-30ca-df11-9b2a-001d60e938c6"}),
            )
            .expect("seed communication");
        id
    }

    /// A case of `contact`, open (status New) or closed; its id.
    pub fn seed_case(&self, contact: &str, owner: &str, open: bool) -> String {
        let status = if open {
            callbridge::tools::sim::creatio::seed::CASE_NEW
        } else {
            callbridge::tools::sim::creatio::seed::CASE_CLOSED
        };
        self.crm
            .insert(
                "Case",
                json!({"Subject": "earlier", "ContactId": contact, "OwnerId": owner, "StatusId": status}),
            )
            .expect("seed case")
    }

    /// The records callbridge made in `entity`.
    pub fn made(&self, entity: &str) -> Vec<Value> {
        self.crm.made(entity)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.daemon
            .await
            .expect("join")
            .expect("daemon stops cleanly");
        self.ami.stop();
        self.esl.stop();
        self.crm.shutdown();
    }
}
