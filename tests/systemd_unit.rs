//! The systemd side: `systemd/callbridge.service` passes `systemd-analyze verify` and
//! scores "OK" or better in `systemd-analyze security`; the real binary tells the
//! service manager `READY=1`, keeps the watchdog alive and says `STOPPING=1` on SIGTERM,
//! over a real `NOTIFY_SOCKET`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use callbridge::tools::sim::ami::AmiSim;
use callbridge::tools::sim::retailcrm::RetailCrmSim;

/// The unit with its commands pointing at the binary under test.
fn unit_under_test(dir: &std::path::Path) -> PathBuf {
    let unit = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/callbridge.service"),
    )
    .expect("systemd/callbridge.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/callbridge run --config "));
    let path = dir.join("callbridge.service");
    std::fs::write(
        &path,
        unit.replace(
            "/usr/local/bin/callbridge",
            env!("CARGO_BIN_EXE_callbridge"),
        ),
    )
    .expect("write unit");
    path
}

fn systemd_analyze() -> bool {
    // .ci/run installs Debian's systemd when the machine lacks it.
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("systemd-analyze is not installed: the unit is not checked here (apt-get install systemd)");
    }
    found
}

#[test]
fn the_unit_verifies_and_its_sandbox_scores_ok() {
    if !systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_under_test(dir.path());
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "verify failed: {stderr}");
    assert!(
        !stderr.contains("callbridge.service"),
        "warnings about the unit: {stderr}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout);
    let overall = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no score in: {text}"));
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unreadable score: {overall}"));
    assert!(
        ["PERFECT", "SAFE", "OK"]
            .iter()
            .any(|w| overall.contains(w))
            && score < 5.0,
        "{overall}"
    );
    eprintln!("{overall}");
}

/// A `NOTIFY_SOCKET` as systemd listens on it: what the daemon tells the service manager.
struct NotifySocket {
    path: PathBuf,
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl NotifySocket {
    fn bind(dir: &std::path::Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        NotifySocket {
            path,
            socket,
            seen: Vec::new(),
        }
    }

    /// Waits until `what` was received `times` times in all; returns every message so far.
    fn wait_for(&mut self, what: &str, times: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let count =
            |seen: &Vec<String>| seen.iter().filter(|m| m.lines().any(|l| l == what)).count();
        while count(&self.seen) < times {
            assert!(
                Instant::now() < deadline,
                "{what} not {times} times in {:?}",
                self.seen
            );
            let mut buf = [0u8; 1024];
            if let Ok(n) = self.socket.recv(&mut buf) {
                self.seen
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        self.seen.clone()
    }
}

/// An AMI peer and a retailCRM stand-in, served by `rt`.
fn simulators(rt: &tokio::runtime::Runtime) -> (AmiSim, RetailCrmSim) {
    rt.block_on(async {
        (
            AmiSim::start(common::ami_options()).await.expect("AMI sim"),
            RetailCrmSim::start(common::crm_options())
                .await
                .expect("CRM sim"),
        )
    })
}

#[test]
fn the_daemon_notifies_ready_keeps_the_watchdog_alive_and_says_stopping() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (pbx, crm) = simulators(&rt);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &pbx, &crm);
    let mut notify = NotifySocket::bind(dir.path());
    // systemd sets WATCHDOG_PID to the service's pid: a shell exports its own and
    // `exec`s the daemon, which keeps that pid.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$; export WATCHDOG_PID; exec \"$0\" run --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_callbridge"))
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let first = notify.wait_for("READY=1", 1);
    assert!(first[0].starts_with("READY=1"), "ready first: {first:?}");
    // Half of WATCHDOG_USEC: a keep-alive every 200 ms.
    notify.wait_for("WATCHDOG=1", 3);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    notify.wait_for("STOPPING=1", 1);
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");
    pbx.stop();
    crm.shutdown();
}

#[test]
fn sighup_reloads_the_employees_map_without_dropping_the_pbx() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (pbx, crm) = simulators(&rt);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::write_config(dir.path(), &pbx, &crm);
    let mut notify = NotifySocket::bind(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    notify.wait_for("READY=1", 1);
    assert!(rt.block_on(pbx.wait_for_logins(1, Duration::from_secs(10))));
    // A new client answered on 101 (Anna, user 3): the customer is Anna's.
    let call = |replica: u32, number: &str| {
        common::fixture("iax2/inbound_answered")
            .replica(replica)
            .with_value("9161234567", number)
    };
    let manager_of = |number: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let state = crm.state();
            if let Some(c) = state
                .customers
                .iter()
                .find(|c| c.phones.iter().any(|p| p.number.contains(number)))
            {
                return c.manager_id;
            }
            assert!(
                Instant::now() < deadline,
                "no customer {number}: {state:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    rt.block_on(pbx.play(&call(1, "9161230091"), 20.0));
    assert_eq!(manager_of("9161230091"), Some(3));

    // 101 now belongs to Boris (user 4); an invalid edit first is refused and logged.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("\"101\" = 3", "\"101\" = \"four\"")).expect("edit");
    let hup = |pid: u32| {
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    hup(child.id());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running after a bad reload"
    );
    std::fs::write(&config, text.replace("\"101\" = 3", "\"101\" = 4")).expect("edit");
    hup(child.id());
    notify.wait_for("RELOADING=1", 1);
    notify.wait_for("READY=1", 2);
    rt.block_on(pbx.play(&call(2, "9161230092"), 20.0));
    assert_eq!(manager_of("9161230092"), Some(4), "the reloaded map");
    assert_eq!(pbx.logins(), 1, "the PBX connection stayed up");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success());
    pbx.stop();
    crm.shutdown();
}

/// `install.sh` stages the binary, the unit (pointing at the installed binary) and the
/// example configuration; a second run keeps the configuration an administrator edited.
#[test]
fn install_sh_puts_binary_unit_and_config_in_place_and_keeps_an_edited_config() {
    let stage = tempfile::tempdir().expect("tempdir");
    let run = || {
        Command::new("sh")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("install.sh"))
            .args(["--binary", env!("CARGO_BIN_EXE_callbridge")])
            .env("DESTDIR", stage.path())
            .env("PREFIX", "/opt/callbridge")
            .output()
            .expect("run install.sh")
    };
    let out = run();
    assert!(
        out.status.success(),
        "install.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stage.path();
    let binary = root.join("opt/callbridge/bin/callbridge");
    let config = root.join("etc/callbridge/callbridge.toml");
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/callbridge.service"))
        .expect("the unit is installed");
    assert!(
        unit.contains(
            "ExecStart=/opt/callbridge/bin/callbridge run --config /etc/callbridge/callbridge.toml"
        ),
        "{unit}"
    );
    assert!(unit.contains("ExecStartPre=/opt/callbridge/bin/callbridge check-config"));
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config)
        .expect("config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640, "the configuration holds secrets");

    // The installed binary accepts the installed example.
    let check = Command::new(&binary)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .expect("run the installed binary");
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Upgrading keeps the administrator's configuration.
    std::fs::write(&config, "# edited\n").expect("edit");
    let again = run();
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "# edited\n"
    );
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept"));
}
