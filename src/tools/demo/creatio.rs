//! `callbridge demo --crm creatio`: the same rows as the retailCRM demo, through the same
//! real daemon and PBX simulators, into the built-in Creatio simulator (forms login,
//! OData 4). Before each row Creatio is given the caller the row needs (nobody; a contact
//! with an open case; a contact whose cases are all closed); after it, the contacts,
//! cases, activities, queue items and calls the call made are printed.

use std::collections::HashMap;

use anyhow::Context;
use serde_json::{json, Value};

use super::rows::{Client, Row, FS_ROWS, ROWS, ROW_7};
use super::{play_call, start_daemon, Stage};
use crate::daemon::Running;
use crate::tools::sim::ami::AmiSim;
use crate::tools::sim::creatio::seed::{CASE_CLOSED, CASE_NEW};
use crate::tools::sim::creatio::{default_employees, CreatioSim, CreatioSimOptions};
use crate::tools::sim::esl::EslSim;

/// The entities a call may leave records in, in the order they are printed.
const ENTITIES: &[&str] = &["Contact", "Case", "Activity", "QueueItem", "Call"];

pub async fn run(speed: f64) -> anyhow::Result<()> {
    crate::ops::logging::init("warn", false);
    let options = CreatioSimOptions::default();
    let crm = CreatioSim::start(options.clone())
        .await
        .context("starting the Creatio simulator")?;
    let stage = Stage::start().await?;
    let (pbx, branch) = (&stage.pbx, &stage.branch);
    let toml = |create_on: &str| {
        format!(
            r#"{stage}
[crm]
kind = "creatio"
url = "{crm_url}"
login = "{login}"
password = "{password}"
[creatio]
missed_calls_queue = "Missed calls"
[employees]
senior = ["{senior}"]
[employees.extensions]
"101" = "{anna}"
[matrix]
create_on = "{create_on}"
"#,
            stage = stage.toml(),
            crm_url = crm.base_url(),
            login = options.login,
            password = options.password,
            senior = contact_of(7),
            anna = contact_of(3),
        )
    };

    println!("callbridge demo --crm creatio: every row of the call matrix into Creatio, with calls recorded from a real Asterisk 22 and a real FreeSWITCH 1.10");
    stage.print();
    println!(
        "  Creatio simulator                 {} (OData 4 at /0/odata, forms login)",
        crm.base_url()
    );
    println!("  the people                        Anna on 101, Boris, senior manager Svetlana (contacts in Creatio); 102 belongs to nobody");
    println!("  missed calls go to the queue      \"Missed calls\"");

    let mut names = Names::default();
    for e in default_employees() {
        names.0.insert(e.contact.clone(), e.name.clone());
    }
    let mut dead = 0;
    let mut replica = 0;
    for (create_on, rows) in [
        ("answer", ROWS),
        ("answer", FS_ROWS),
        ("ring", std::slice::from_ref(&ROW_7)),
    ] {
        let (running, shutdown, daemon) = start_daemon(&toml(create_on), pbx, branch).await?;
        for row in rows {
            replica += 1;
            play_row(pbx, branch, &crm, &running, row, replica, speed, &mut names).await?;
        }
        dead += running.store.outbox_counts().await?.dead;
        shutdown.cancel();
        daemon.await.context("daemon task")??;
    }
    println!();
    println!(
        "Creatio now holds {} contacts, {} cases, {} activities, {} queue items and {} calls made by callbridge; it answered {} requests.",
        crm.made("Contact").len(),
        crm.made("Case").len(),
        crm.made("Activity").len(),
        crm.made("QueueItem").len(),
        crm.made("Call").len(),
        crm.requests().len()
    );
    stage.stop();
    crm.shutdown();
    if dead > 0 {
        anyhow::bail!("{dead} CRM actions were refused; see `callbridge outbox list --state dead`");
    }
    Ok(())
}

/// The contact id of the simulator's employee `n` (3 Anna, 4 Boris, 7 Svetlana).
fn contact_of(n: u64) -> String {
    crate::tools::sim::creatio::SimEmployee::new(u32::try_from(n).unwrap_or(0), "", None).contact
}

/// Contact ids → names, for printing.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn of(&self, id: &str) -> String {
        if id.is_empty() || id == crate::tools::sim::creatio::EMPTY_GUID {
            return "nobody".into();
        }
        self.0
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("contact {}", &id[..8.min(id.len())]))
    }
}

#[allow(clippy::too_many_arguments)]
async fn play_row(
    pbx: &AmiSim,
    branch: &EslSim,
    crm: &CreatioSim,
    running: &Running,
    row: &Row,
    replica: u32,
    speed: f64,
    names: &mut Names,
) -> anyhow::Result<()> {
    let seeded = match row.client {
        Client::New => "nobody has this number".to_string(),
        Client::Existing(manager) | Client::Returning(manager) => {
            let open = matches!(row.client, Client::Existing(_));
            let owner = contact_of(manager);
            let name = format!("Client {}", row.name);
            let seed = |entity: &str, record: Value| {
                crm.insert(entity, record)
                    .map_err(|e| anyhow::anyhow!("seeding Creatio: {}", e.message))
            };
            let contact = seed("Contact", json!({"Name": name, "OwnerId": owner}))?;
            names.0.insert(contact.clone(), name.clone());
            // Typed the way a person would: the match is on the number.
            seed(
                "ContactCommunication",
                json!({"ContactId": contact, "Number": format!("8 {}", row.number)}),
            )?;
            seed(
                "Case",
                json!({"Subject": "An earlier request", "ContactId": contact, "OwnerId": owner,
                       "StatusId": if open { CASE_NEW } else { CASE_CLOSED }}),
            )?;
            format!(
                "contact {name:?} of {}, a case {}",
                names.of(&owner),
                if open { "open" } else { "closed" }
            )
        }
    };
    let before: HashMap<&str, usize> = ENTITIES.iter().map(|e| (*e, crm.made(e).len())).collect();
    let owners_before: HashMap<String, String> = crm
        .records("Contact")
        .iter()
        .map(|c| (text(c, "Id"), text(c, "OwnerId")))
        .collect();
    println!();
    println!("Row {}: {}", row.name, row.what);
    println!("  in Creatio before:  {seeded}");
    play_call(pbx, branch, running, row, replica, speed).await?;
    let new = |entity: &str| {
        crm.made(entity)
            .into_iter()
            .skip(before.get(entity).copied().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    let cases: HashMap<String, String> = crm
        .records("Case")
        .iter()
        .map(|c| (text(c, "Id"), text(c, "Number")))
        .collect();
    let mut lines = Vec::new();
    for c in new("Contact") {
        names.0.insert(text(&c, "Id"), text(&c, "Name"));
        lines.push(format!(
            "new contact {:?}, owner {}",
            text(&c, "Name"),
            names.of(&text(&c, "OwnerId"))
        ));
    }
    for c in crm.records("Contact") {
        let (id, owner) = (text(&c, "Id"), text(&c, "OwnerId"));
        if let Some(old) = owners_before.get(&id).filter(|old| **old != owner) {
            lines.push(format!(
                "contact {:?} now belongs to {} (was {})",
                text(&c, "Name"),
                names.of(&owner),
                names.of(old)
            ));
        }
    }
    for c in new("Case") {
        lines.push(format!(
            "new case {} for {}, owner {}: {}",
            text(&c, "Number"),
            names.of(&text(&c, "ContactId")),
            names.of(&text(&c, "OwnerId")),
            text(&c, "Subject")
        ));
    }
    for a in new("Activity") {
        let done = text(&a, "StatusId") == "4bdbb88f-58e6-df11-971b-001d60e938c6";
        let on = cases
            .get(&text(&a, "CaseId"))
            .map(|n| format!("case {n}"))
            .unwrap_or_else(|| names.of(&text(&a, "ContactId")));
        lines.push(format!(
            "{} activity for {} on {on}: {}",
            if done { "completed" } else { "open" },
            names.of(&text(&a, "OwnerId")),
            text(&a, "Title")
        ));
    }
    for q in new("QueueItem") {
        let on = cases
            .get(&text(&q, "EntityRecordId"))
            .map(|n| format!("case {n}"))
            .unwrap_or_else(|| "an activity".into());
        lines.push(format!(
            "queue item in \"Missed calls\" for {on}: {}",
            text(&q, "Caption")
        ));
    }
    for c in new("Call") {
        let incoming = text(&c, "DirectionId") == "1d96a65f-2131-4916-8825-2d142b1000b2";
        lines.push(format!(
            "call {} {}, talk {} s, contact {}{}{}",
            if incoming { "from" } else { "to" },
            if incoming {
                text(&c, "CallerId")
            } else {
                text(&c, "CalledId")
            },
            c["TalkTime"].as_i64().unwrap_or(0),
            names.of(&text(&c, "ContactId")),
            cases
                .get(&text(&c, "CaseId"))
                .map(|n| format!(", case {n}"))
                .unwrap_or_default(),
            if text(&c, "Comment").contains("/recordings/") {
                ", with a link to the recording"
            } else {
                ""
            }
        ));
    }
    println!("  Creatio got:");
    for l in lines {
        println!("    {l}");
    }
    Ok(())
}

fn text(v: &Value, column: &str) -> String {
    v[column].as_str().unwrap_or_default().to_string()
}
