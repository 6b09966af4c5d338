//! The demo's rows: which recorded call plays each row of the call matrix, the number
//! its caller gets, and who the caller is in the CRM before the call. Both CRMs' demos
//! play the same rows.

pub(super) const INBOUND_ANSWERED: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/asterisk/iax2/inbound_answered.ami"),
    include_str!("../../../tests/fixtures/asterisk/iax2/inbound_answered.timing"),
);
pub(super) const INBOUND_MISSED: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/asterisk/iax2/inbound_missed.ami"),
    include_str!("../../../tests/fixtures/asterisk/iax2/inbound_missed.timing"),
);
pub(super) const RING_GROUP: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/asterisk/iax2/ring_group_second_answers.ami"),
    include_str!("../../../tests/fixtures/asterisk/iax2/ring_group_second_answers.timing"),
);
pub(super) const VOICEMAIL: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/asterisk/iax2/inbound_voicemail.ami"),
    include_str!("../../../tests/fixtures/asterisk/iax2/inbound_voicemail.timing"),
);
pub(super) const OUTBOUND_ANSWERED: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/asterisk/iax2/outbound_answered.ami"),
    include_str!("../../../tests/fixtures/asterisk/iax2/outbound_answered.timing"),
);
pub(super) const FS_INBOUND_ANSWERED: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/esl/inbound_answered.esl"),
    include_str!("../../../tests/fixtures/esl/inbound_answered.timing"),
);
pub(super) const FS_QUEUE: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/esl/queue_agent_answers.esl"),
    include_str!("../../../tests/fixtures/esl/queue_agent_answers.timing"),
);
pub(super) const FS_INBOUND_MISSED: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/esl/inbound_missed.esl"),
    include_str!("../../../tests/fixtures/esl/inbound_missed.timing"),
);
pub(super) const FS_VOICEMAIL: (&[u8], &str) = (
    include_bytes!("../../../tests/fixtures/esl/inbound_voicemail.esl"),
    include_str!("../../../tests/fixtures/esl/inbound_voicemail.timing"),
);

/// Which PBX a row's call comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pbx {
    /// The office: Asterisk through AMI.
    Asterisk,
    /// The branch: FreeSWITCH through the event socket.
    FreeSwitch,
}

/// Who the caller is in the CRM before the call.
#[derive(Clone, Copy)]
pub(super) enum Client {
    New,
    /// A customer of this manager with an open order.
    Existing(u64),
    /// A customer of this manager whose only order is complete.
    Returning(u64),
}

/// One row: its name, what happens, the recording, the number the recording's caller
/// (or callee) has, the number it gets here (each row its own caller), the CRM before.
pub(super) struct Row {
    pub(super) name: &'static str,
    pub(super) what: &'static str,
    pub(super) pbx: Pbx,
    pub(super) recording: (&'static [u8], &'static str),
    pub(super) recorded_number: &'static str,
    pub(super) number: &'static str,
    pub(super) client: Client,
}

pub(super) const ANNA: u64 = 3;
pub(super) const BORIS: u64 = 4;

pub(super) const ROWS: &[Row] = &[
    Row {
        name: "1",
        what: "inbound, answered by Anna (101), new client",
        pbx: Pbx::Asterisk,
        recording: INBOUND_ANSWERED,
        recorded_number: "9161234567",
        number: "9161230001",
        client: Client::New,
    },
    Row {
        name: "2a",
        what: "inbound, answered by Anna, existing client of Anna",
        pbx: Pbx::Asterisk,
        recording: INBOUND_ANSWERED,
        recorded_number: "9161234567",
        number: "9161230002",
        client: Client::Existing(ANNA),
    },
    Row {
        name: "2b",
        what: "inbound, answered by Anna, existing client of Boris",
        pbx: Pbx::Asterisk,
        recording: INBOUND_ANSWERED,
        recorded_number: "9161234567",
        number: "9161230003",
        client: Client::Existing(BORIS),
    },
    Row {
        name: "2c",
        what: "inbound, answered on 102, an extension mapped to nobody",
        pbx: Pbx::Asterisk,
        recording: RING_GROUP,
        recorded_number: "9261112233",
        number: "9161230004",
        client: Client::Existing(ANNA),
    },
    Row {
        name: "3a",
        what: "inbound, answered by Anna, returning client of Anna",
        pbx: Pbx::Asterisk,
        recording: INBOUND_ANSWERED,
        recorded_number: "9161234567",
        number: "9161230005",
        client: Client::Returning(ANNA),
    },
    Row {
        name: "3b",
        what: "inbound, answered by Anna, returning client of Boris",
        pbx: Pbx::Asterisk,
        recording: INBOUND_ANSWERED,
        recorded_number: "9161234567",
        number: "9161230006",
        client: Client::Returning(BORIS),
    },
    Row {
        name: "4a",
        what: "inbound, missed, existing client with an open order",
        pbx: Pbx::Asterisk,
        recording: INBOUND_MISSED,
        recorded_number: "9035556677",
        number: "9161230007",
        client: Client::Existing(BORIS),
    },
    Row {
        name: "4b",
        what: "inbound, missed, new client",
        pbx: Pbx::Asterisk,
        recording: INBOUND_MISSED,
        recorded_number: "9035556677",
        number: "9161230008",
        client: Client::New,
    },
    Row {
        name: "5a",
        what: "outbound by Anna, answered, client of Anna",
        pbx: Pbx::Asterisk,
        recording: OUTBOUND_ANSWERED,
        recorded_number: "9031112233",
        number: "9161230009",
        client: Client::Existing(ANNA),
    },
    Row {
        name: "5b",
        what: "outbound by Anna, answered, client of Boris",
        pbx: Pbx::Asterisk,
        recording: OUTBOUND_ANSWERED,
        recorded_number: "9031112233",
        number: "9161230010",
        client: Client::Existing(BORIS),
    },
    Row {
        name: "5c",
        what: "outbound by Anna to a number not in the CRM",
        pbx: Pbx::Asterisk,
        recording: OUTBOUND_ANSWERED,
        recorded_number: "9031112233",
        number: "9161230011",
        client: Client::New,
    },
    Row {
        name: "6a",
        what: "inbound to voicemail, new number",
        pbx: Pbx::Asterisk,
        recording: VOICEMAIL,
        recorded_number: "9167778800",
        number: "9161230012",
        client: Client::New,
    },
    Row {
        name: "6b",
        what: "inbound to voicemail, existing client of Boris",
        pbx: Pbx::Asterisk,
        recording: VOICEMAIL,
        recorded_number: "9167778800",
        number: "9161230013",
        client: Client::Existing(BORIS),
    },
];

/// The same rows with calls from the FreeSWITCH branch (the same daemon).
pub(super) const FS_ROWS: &[Row] = &[
    Row {
        name: "1 (FreeSWITCH)",
        what: "inbound to the branch, answered by Anna (101), new client",
        pbx: Pbx::FreeSwitch,
        recording: FS_INBOUND_ANSWERED,
        recorded_number: "9161234567",
        number: "9161230021",
        client: Client::New,
    },
    Row {
        name: "2a (FreeSWITCH)",
        what: "inbound to the branch's sales queue: 102 does not answer, Anna does; existing client of Anna",
        pbx: Pbx::FreeSwitch,
        recording: FS_QUEUE,
        recorded_number: "9857778899",
        number: "9161230022",
        client: Client::Existing(ANNA),
    },
    Row {
        name: "4a (FreeSWITCH)",
        what: "inbound to the branch, missed, existing client with an open order",
        pbx: Pbx::FreeSwitch,
        recording: FS_INBOUND_MISSED,
        recorded_number: "9035556677",
        number: "9161230023",
        client: Client::Existing(BORIS),
    },
    Row {
        name: "6a (FreeSWITCH)",
        what: "inbound to the branch's voicemail, new number",
        pbx: Pbx::FreeSwitch,
        recording: FS_VOICEMAIL,
        recorded_number: "9167778800",
        number: "9161230024",
        client: Client::New,
    },
];

/// Row 7 runs with `create_on = "ring"`.
pub(super) const ROW_7: Row = Row {
    name: "7",
    what: "create_on = \"ring\": inbound, answered by Anna, new client",
    pbx: Pbx::Asterisk,
    recording: INBOUND_ANSWERED,
    recorded_number: "9161234567",
    number: "9161230014",
    client: Client::New,
};
