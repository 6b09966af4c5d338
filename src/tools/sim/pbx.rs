//! What both PBX simulators are apart from their protocol: a listener on loopback, the
//! clients that logged in, playing transcripts to them, cutting them off, stopping. One
//! handle, [`PbxSim`], with the protocol as its parameter: `AmiSim` is
//! `PbxSim<ami::Asterisk>`, `EslSim` is `PbxSim<esl::FreeSwitch>`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::tools::sim::lock;
use crate::tools::sim::subscribers::Subscribers;
use crate::tools::sim::transcript::{self, Transcript};

/// One PBX protocol as a simulator speaks it: its own state (credentials, what clients
/// sent), the channels its events create, and how it talks to one client.
pub trait Protocol: Sized + Send + Sync + 'static {
    /// What the caller chooses when starting the simulator.
    type Options;
    /// The channels the simulated PBX has now, learned from the events it sends.
    type Channels: ChannelList;
    /// How logs name the simulator.
    const NAME: &'static str;

    fn new(options: Self::Options) -> Self;

    /// Talks to one client until it leaves or its connection is closed.
    fn serve(stream: TcpStream, peer: Arc<Peer<Self>>) -> impl Future<Output = ()> + Send;
}

/// What a simulated PBX knows of its channels, so it can answer a channel list like
/// the real one.
pub trait ChannelList: Default + Send {
    /// Takes note of bytes sent to the clients (the channels they create and end).
    fn observe(&mut self, bytes: &[u8]);

    /// Channels open now.
    fn count(&self) -> usize;
}

/// What an event the simulator sends does to the channel it names.
pub enum ChannelChange<New> {
    /// A new channel: `New` makes its record (unless the list has it already).
    Created(New),
    /// The channel is gone.
    Ended,
    /// Anything else said of the channel.
    Changed,
}

/// Applies `change` to channel `id` in `open` (kept in creation order; `id_of` reads a
/// record's id) and returns its record to update further: none when the channel ended,
/// or when the event names a channel the list never had and does not create it.
pub fn track_channel<'a, C>(
    open: &'a mut Vec<C>,
    id: &str,
    id_of: impl Fn(&C) -> &str,
    change: ChannelChange<impl FnOnce() -> C>,
) -> Option<&'a mut C> {
    let pos = match (open.iter().position(|c| id_of(c) == id), change) {
        (_, ChannelChange::Ended) => {
            open.retain(|c| id_of(c) != id);
            return None;
        }
        (Some(pos), _) => pos,
        (None, ChannelChange::Created(new)) => {
            open.push(new());
            open.len() - 1
        }
        (None, ChannelChange::Changed) => return None,
    };
    open.get_mut(pos)
}

/// The simulated PBX, shared by its handles and every connection's task.
pub struct Peer<P: Protocol> {
    pub protocol: P,
    pub channels: Mutex<P::Channels>,
    /// Logged-in connections: their outgoing queue and a switch that closes them.
    pub subscribers: Subscribers,
    stop: CancellationToken,
}

/// One client's connection: what it reads, its outgoing queue (written in order by its
/// own task, which sends the protocol's greeting first), the switch that closes it, and
/// that writer task.
pub struct Connection {
    pub read: OwnedReadHalf,
    pub tx: mpsc::UnboundedSender<Bytes>,
    pub close: CancellationToken,
    pub writer: JoinHandle<()>,
}

impl<P: Protocol> Peer<P> {
    /// Starts writing to a new client: `greeting` first, then whatever is queued.
    pub fn connect(&self, stream: TcpStream, greeting: &'static [u8]) -> Connection {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        // Closes this connection alone (drop_clients) or with the whole peer (stop).
        let close = self.stop.child_token();
        let stop = close.clone();
        let writer = tokio::spawn(async move {
            if write.write_all(greeting).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(bytes) => if write.write_all(&bytes).await.is_err() { return },
                        None => return,
                    },
                    _ = stop.cancelled() => {
                        // What was sent before the link broke still arrives.
                        while let Ok(bytes) = rx.try_recv() {
                            if write.write_all(&bytes).await.is_err() { return }
                        }
                        return;
                    }
                }
            }
        });
        Connection {
            read,
            tx,
            close,
            writer,
        }
    }
}

/// Handle to a running PBX simulator; clones share it.
pub struct PbxSim<P: Protocol> {
    addr: SocketAddr,
    peer: Arc<Peer<P>>,
}

impl<P: Protocol> Clone for PbxSim<P> {
    fn clone(&self) -> Self {
        PbxSim {
            addr: self.addr,
            peer: self.peer.clone(),
        }
    }
}

impl<P: Protocol> PbxSim<P> {
    /// Binds `127.0.0.1:0` (any free port) and serves in spawned tasks.
    pub async fn start(options: P::Options) -> std::io::Result<PbxSim<P>> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), options).await
    }

    /// Binds a given address (e.g. the port of a simulator that was stopped, to test
    /// reconnection).
    pub async fn start_on(addr: SocketAddr, options: P::Options) -> std::io::Result<PbxSim<P>> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let peer = Arc::new(Peer {
            protocol: P::new(options),
            channels: Mutex::default(),
            subscribers: Subscribers::default(),
            stop: CancellationToken::new(),
        });
        let accept_peer = peer.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => { tokio::spawn(P::serve(stream, accept_peer.clone())); }
                        Err(e) => { debug!(error = %e, "{} sim accept failed", P::NAME); }
                    },
                    _ = accept_peer.stop.cancelled() => break,
                }
            }
        });
        Ok(PbxSim { addr, peer })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Logins so far: successful AMI `Login`s, event socket clients that authenticated
    /// and subscribed.
    pub fn logins(&self) -> u64 {
        self.peer.subscribers.logins()
    }

    /// Waits until at least `n` logins happened.
    pub async fn wait_for_logins(&self, n: u64, within: Duration) -> bool {
        self.peer.subscribers.wait_for_logins(n, within).await
    }

    /// Logged-in clients whose connection is still open.
    pub fn connected(&self) -> usize {
        self.peer.subscribers.connected()
    }

    /// Sends raw bytes to every logged-in client as they are; returns how many got them.
    pub fn send_raw(&self, bytes: Bytes) -> usize {
        // Handed to the clients first: the simulator's own note of its channels (for
        // the channel list it answers) must not delay what the clients read.
        let sent = self.peer.subscribers.broadcast(bytes.clone());
        lock(&self.peer.channels).observe(&bytes);
        sent
    }

    /// Plays a transcript with its original pace divided by `speed` (1.0 = real time).
    pub async fn play(&self, transcript: &Transcript, speed: f64) {
        transcript::play(transcript, speed, |chunk| {
            self.send_raw(chunk);
        })
        .await
    }

    /// Channels the simulated PBX has now.
    pub fn live_channels(&self) -> usize {
        lock(&self.peer.channels).count()
    }

    /// Drops every client connection but keeps listening and keeps its channels: the
    /// network between callbridge and the PBX broke (or the PBX restarted its socket),
    /// the PBX did not.
    pub fn drop_clients(&self) {
        self.peer.subscribers.drop_all();
    }

    /// Closes the listener and every connection, like a PBX that went down.
    pub fn stop(&self) {
        self.peer.stop.cancel();
        self.peer.subscribers.clear();
    }

    /// The protocol's own state, for its own handle methods.
    pub(super) fn protocol(&self) -> &P {
        &self.peer.protocol
    }
}
