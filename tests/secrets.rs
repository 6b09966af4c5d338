//! No configured secret appears in any log line: the real binary, at `trace` level, runs
//! an Asterisk and a FreeSWITCH (AMI secret, event socket password), a CRM (API key) and
//! signed recording links (link secret) through recorded calls and a stop; its whole
//! log is searched for each secret.

mod common;

use std::time::{Duration, Instant};

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::esl::{EslSim, EslSimOptions};
use callbridge::tools::sim::retailcrm::RetailCrmSim;
use common::{DaemonProcess, AMI_SECRET, CRM_KEY, ESL_PASSWORD};

const LINK_SECRET: &str = "link-Secret-8hq2x";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_any_log_line_of_a_full_run() {
    let ami = AmiSim::start(common::ami_options()).await.expect("AMI sim");
    let fs = EslSim::start(EslSimOptions {
        password: ESL_PASSWORD.into(),
    })
    .await
    .expect("ESL sim");
    let crm = RetailCrmSim::start(common::crm_options())
        .await
        .expect("CRM sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let branch = format!(
        "[[pbx]]\nname = \"branch\"\nkind = \"freeswitch\"\nhost = \"127.0.0.1\"\nport = {}\nsecret = \"{ESL_PASSWORD}\"\n",
        fs.addr().port()
    );
    let toml = common::config_toml(
        ami.addr().port(),
        &crm.base_url(),
        &dir.path().join("cb.db"),
        &branch,
    )
    .replace("test-link-secret", LINK_SECRET);
    assert!(toml.contains(LINK_SECRET) && toml.contains(CRM_KEY) && toml.contains(AMI_SECRET));
    let path = dir.path().join("callbridge.toml");
    std::fs::write(&path, toml).expect("config");
    let mut daemon = DaemonProcess::spawn(&path, "trace", true);
    assert!(ami.wait_for_logins(1, Duration::from_secs(20)).await);
    assert!(fs.wait_for_logins(1, Duration::from_secs(20)).await);
    let (recorded, queue) = (
        common::fixture("iax2/recording"),
        common::esl_fixture("queue_agent_answers"),
    );
    tokio::join!(ami.play(&recorded, 20.0), fs.play(&queue, 20.0));
    let deadline = Instant::now() + Duration::from_secs(20);
    while crm.state().calls.len() < 2 {
        assert!(Instant::now() < deadline, "both calls in the history");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = crm.state();
    assert!(
        state.calls.iter().all(|c| c.record_url.is_some()),
        "signed links were made"
    );
    daemon.terminate();
    let logs = daemon.logs();
    assert!(logs.lines().count() > 100, "a full trace log: {logs}");
    assert!(logs.contains("ended"), "the calls are in the log");
    for (what, secret) in [
        ("AMI secret", AMI_SECRET),
        ("event socket password", ESL_PASSWORD),
        ("CRM API key", CRM_KEY),
        ("link secret", LINK_SECRET),
    ] {
        if let Some(line) = logs.lines().find(|l| l.contains(secret)) {
            panic!("the {what} is in the log: {line}");
        }
    }
    ami.stop();
    fs.stop();
    crm.shutdown();
}

/// The same on Creatio, both logins: neither the password nor the client secret, nor any
/// session cookie, CSRF value or token Creatio handed out, is in the trace log, across a
/// session Creatio ended and callbridge renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_creatio_secret_in_any_log_line() {
    use callbridge::tools::sim::creatio::{CreatioSim, CreatioSimOptions};
    use common::creatio::{creatio_config, Side};
    const PASSWORD: &str = "cr-Pass-93kd1";
    const CLIENT_SECRET: &str = "cr-Client-Secret-7ap3";
    for oauth in [false, true] {
        let ami = AmiSim::start(common::ami_options()).await.expect("AMI sim");
        let crm = CreatioSim::start(CreatioSimOptions {
            password: PASSWORD.into(),
            client_secret: CLIENT_SECRET.into(),
            ..CreatioSimOptions::default()
        })
        .await
        .expect("Creatio sim");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut toml = creatio_config(
            Side::Asterisk,
            ami.addr().port(),
            &crm.base_url(),
            &dir.path().join("cb.db"),
        )
        .replace("sim-password", PASSWORD)
        .replace("test-link-secret", LINK_SECRET);
        if oauth {
            toml = toml.replace(
                &format!("login = \"callbridge\"\npassword = \"{PASSWORD}\"\n"),
                &format!(
                    "client_id = \"callbridge-client\"\nclient_secret = \"{CLIENT_SECRET}\"\nidentity_url = \"{}\"\n",
                    crm.base_url()
                ),
            );
        }
        let path = dir.path().join("callbridge.toml");
        std::fs::write(&path, toml).expect("config");
        let mut daemon = DaemonProcess::spawn(&path, "trace", true);
        assert!(ami.wait_for_logins(1, Duration::from_secs(20)).await);
        ami.play(&common::fixture("iax2/recording"), 20.0).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while crm.made("Call").is_empty() {
            assert!(Instant::now() < deadline, "the first call in Creatio");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crm.end_sessions();
        ami.play(&common::fixture("iax2/outbound_answered"), 20.0)
            .await;
        while crm.made("Call").len() < 2 {
            assert!(Instant::now() < deadline, "the second call in Creatio");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        daemon.terminate();
        let logs = daemon.logs();
        assert!(logs.lines().count() > 50, "a full trace log: {logs}");
        let issued = crm.issued_secrets();
        assert!(issued.len() >= 2, "logged in twice: {issued:?}");
        let mut secrets = vec![
            ("password", PASSWORD.to_string()),
            ("client secret", CLIENT_SECRET.to_string()),
            ("link secret", LINK_SECRET.to_string()),
        ];
        secrets.extend(
            issued
                .into_iter()
                .map(|s| ("session cookie, CSRF value or token", s)),
        );
        for (what, secret) in secrets {
            if let Some(line) = logs.lines().find(|l| l.contains(&secret)) {
                panic!("the {what} is in the log (oauth: {oauth}): {line}");
            }
        }
        ami.stop();
        crm.shutdown();
    }
}
