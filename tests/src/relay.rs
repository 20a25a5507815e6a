//! A WAN in user space: [`Relay`] listens on a loopback UDP port and forwards each datagram to a
//! target (a site's link listener), and the target's replies back to the sender, through an
//! emulated link in each direction: a one-way delay, random loss and a bandwidth cap with a
//! bounded queue, as a router has.
//!
//! Each client address gets its own socket towards the target, so a QUIC connection through the
//! relay sees one stable peer at both ends. Packets in flight are pipelined: each gets its
//! delivery time when it arrives (`max(now, link free) + serialisation + delay`) and a
//! delivery task per direction sends them in order when their time comes, so the delay does not
//! cut the throughput below the cap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The emulated link, the same in both directions.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// One-way delay (the round trip is twice this).
    pub delay: Duration,
    /// Fraction of the packets dropped at random, in each direction (0 to 1).
    pub loss: f64,
    /// Bandwidth cap per direction, bits per second (0: none).
    pub rate_bits_per_sec: u64,
    /// Most data queued for the cap, per direction, as the time it takes to send at the cap
    /// (a packet that would wait longer is dropped, as a full router queue drops it).
    pub queue: Duration,
    /// Seed of the loss draws.
    pub seed: u64,
}

impl Default for RelayConfig {
    /// No delay, no loss, no cap (a 1 s queue once a cap is set).
    fn default() -> RelayConfig {
        RelayConfig {
            delay: Duration::ZERO,
            loss: 0.0,
            rate_bits_per_sec: 0,
            queue: Duration::from_secs(1),
            seed: 1,
        }
    }
}

impl RelayConfig {
    /// A WAN with round trip `rtt` and `mbit` Mbit/s each way, no loss.
    pub fn wan(rtt: Duration, mbit: u64) -> RelayConfig {
        RelayConfig {
            delay: rtt / 2,
            rate_bits_per_sec: mbit * 1_000_000,
            ..RelayConfig::default()
        }
    }

    /// The same with `loss` (0 to 1) of the packets dropped each way.
    pub fn with_loss(self, loss: f64) -> RelayConfig {
        RelayConfig { loss, ..self }
    }
}

/// What one direction carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Packets handed on to their destination.
    pub packets: u64,
    /// Their bytes (UDP payload).
    pub bytes: u64,
    /// Packets dropped at random.
    pub lost: u64,
    /// Packets dropped because the queue was full.
    pub queue_dropped: u64,
    /// Packets the relay failed to send on.
    pub send_failed: u64,
}

/// What the relay carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// From the clients to the target.
    pub to_target: DirStats,
    /// From the target back to the clients.
    pub to_client: DirStats,
    /// Client addresses seen (each has its own socket towards the target).
    pub clients: u64,
}

#[derive(Default)]
struct DirCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    queue_dropped: AtomicU64,
    send_failed: AtomicU64,
}

impl DirCounters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            send_failed: self.send_failed.load(Ordering::Relaxed),
        }
    }
}

/// A packet on its way: sent from `via` to `to` at `at`.
struct Packet {
    at: Instant,
    data: Vec<u8>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

struct PipeState {
    /// When the link has sent everything queued so far.
    free_at: Instant,
    rng: StdRng,
    /// To the delivery task, in delivery order.
    out: mpsc::UnboundedSender<Packet>,
}

/// One direction of the emulated link.
struct Pipe {
    cfg: RelayConfig,
    state: Mutex<PipeState>,
    counters: Arc<DirCounters>,
}

impl Pipe {
    /// A pipe and the task that delivers what goes through it.
    fn new(
        cfg: RelayConfig,
        seed: u64,
        counters: Arc<DirCounters>,
    ) -> (Arc<Pipe>, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let pipe = Arc::new(Pipe {
            cfg,
            state: Mutex::new(PipeState {
                free_at: Instant::now(),
                rng: StdRng::seed_from_u64(seed),
                out: tx,
            }),
            counters: counters.clone(),
        });
        (pipe, deliver(rx, counters))
    }

    /// Time to put `len` bytes on the wire at the cap.
    fn serialisation(&self, len: usize) -> Duration {
        let nanos = (len as u128 * 8 * 1_000_000_000) / u128::from(self.cfg.rate_bits_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Takes a packet that arrived now: drops it (loss, full queue) or schedules its delivery.
    fn offer(&self, data: Vec<u8>, via: Arc<UdpSocket>, to: SocketAddr) {
        let now = Instant::now();
        // Scheduling and queueing under one lock keeps the delivery times in order.
        let mut s = self.state.lock().expect("relay pipe");
        if self.cfg.loss > 0.0 && s.rng.gen::<f64>() < self.cfg.loss {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut leaves = now;
        if self.cfg.rate_bits_per_sec > 0 {
            let start = s.free_at.max(now);
            let done = start + self.serialisation(data.len());
            if done - now > self.cfg.queue {
                self.counters.queue_dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            s.free_at = done;
            leaves = done;
        }
        let _ = s.out.send(Packet {
            at: leaves + self.cfg.delay,
            data,
            via,
            to,
        });
    }
}

/// Sends each packet when its time comes (the times are in order).
async fn deliver(mut rx: mpsc::UnboundedReceiver<Packet>, counters: Arc<DirCounters>) {
    while let Some(p) = rx.recv().await {
        if p.at > Instant::now() {
            tokio::time::sleep_until(p.at).await;
        }
        let len = p.data.len() as u64;
        // Counted before it leaves, so whoever receives it sees it counted.
        counters.packets.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(len, Ordering::Relaxed);
        if p.via.send_to(&p.data, p.to).await.is_err() {
            counters.packets.fetch_sub(1, Ordering::Relaxed);
            counters.bytes.fetch_sub(len, Ordering::Relaxed);
            counters.send_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running relay; it stops when [`Relay::stop`] is called or it is dropped.
pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    to_target: Arc<DirCounters>,
    to_client: Arc<DirCounters>,
    clients: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on a free loopback port forwarding to `target`.
    pub async fn start(target: SocketAddr, cfg: RelayConfig) -> std::io::Result<Relay> {
        Relay::start_on("127.0.0.1:0".parse().expect("address"), target, cfg).await
    }

    /// Starts a relay listening on `listen` forwarding to `target`.
    pub async fn start_on(
        listen: SocketAddr,
        target: SocketAddr,
        cfg: RelayConfig,
    ) -> std::io::Result<Relay> {
        assert!(
            (0.0..=1.0).contains(&cfg.loss),
            "loss is a fraction: {}",
            cfg.loss
        );
        let front = Arc::new(UdpSocket::bind(listen).await?);
        let addr = front.local_addr()?;
        let to_target = Arc::new(DirCounters::default());
        let to_client = Arc::new(DirCounters::default());
        let clients = Arc::new(AtomicU64::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(
            front,
            target,
            cfg,
            to_target.clone(),
            to_client.clone(),
            clients.clone(),
            stop_rx,
        ));
        Ok(Relay {
            addr,
            target,
            to_target,
            to_client,
            clients,
            stop,
            task: Some(task),
        })
    }

    /// Where clients send (the address to give them instead of the target's).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the relay forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// What it carried so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            to_target: self.to_target.snapshot(),
            to_client: self.to_client.snapshot(),
            clients: self.clients.load(Ordering::Relaxed),
        }
    }

    /// Stops the relay (packets in flight are dropped) and waits for its tasks to end.
    pub async fn stop(mut self) -> RelayStats {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.stats()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The relay's main loop; the tasks it starts end with it (the join set aborts them).
async fn run(
    front: Arc<UdpSocket>,
    target: SocketAddr,
    cfg: RelayConfig,
    to_target: Arc<DirCounters>,
    to_client: Arc<DirCounters>,
    clients: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    let (up, up_task) = Pipe::new(cfg.clone(), cfg.seed, to_target);
    let (down, down_task) = Pipe::new(cfg.clone(), cfg.seed.wrapping_add(1), to_client);
    tasks.spawn(up_task);
    tasks.spawn(down_task);
    let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0".parse().expect("address")
    } else {
        "[::]:0".parse().expect("address")
    };
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            // Also ends when the relay is dropped (the sender goes away).
            _ = stop.wait_for(|s| *s) => break,
            r = front.recv_from(&mut buf) => match r {
                Ok(v) => v,
                // A datagram that could not be read (too large, an ICMP error): skip it.
                Err(_) => continue,
            },
        };
        let sock = match upstream.get(&from) {
            Some(s) => s.clone(),
            None => {
                let Ok(s) = UdpSocket::bind(bind).await else {
                    continue;
                };
                let s = Arc::new(s);
                clients.fetch_add(1, Ordering::Relaxed);
                tasks.spawn(replies(
                    s.clone(),
                    target,
                    front.clone(),
                    from,
                    down.clone(),
                ));
                upstream.insert(from, s.clone());
                s
            }
        };
        up.offer(buf[..n].to_vec(), sock, target);
    }
    tasks.shutdown().await;
}

/// Carries what the target sends to `client`'s socket back to `client`, through `down`.
async fn replies(
    sock: Arc<UdpSocket>,
    target: SocketAddr,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    down: Arc<Pipe>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) if from == target => down.offer(buf[..n].to_vec(), front.clone(), client),
            // Not from the target, or unreadable: not ours to carry.
            Ok(_) | Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UDP echo server on a free loopback port, until the returned task is aborted.
    async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = sock.local_addr().expect("echo addr");
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let _ = sock.send_to(&buf[..n], from).await;
            }
        });
        (addr, task)
    }

    const WAIT: Duration = Duration::from_secs(10);

    /// The next datagram at `sock`, failing after [`WAIT`].
    async fn recv(sock: &UdpSocket) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
            .await
            .expect("a datagram within the wait")
            .expect("recv");
        buf.truncate(n);
        buf
    }

    /// The relay's stats once `done` holds for them, failing after [`WAIT`].
    async fn settle(relay: &Relay, done: impl Fn(&RelayStats) -> bool) -> RelayStats {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = relay.stats();
            if done(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "the relay did not settle: {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn packets_cross_with_the_delay_and_are_counted_each_way() {
        let (target, echo_task) = echo().await;
        let delay = Duration::from_millis(40);
        let relay = Relay::start(
            target,
            RelayConfig {
                delay,
                rate_bits_per_sec: 100_000_000,
                ..RelayConfig::default()
            },
        )
        .await
        .expect("relay");
        assert_eq!(relay.target(), target);

        // One round trip: out and back through the relay, at least twice the delay.
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        let t0 = Instant::now();
        client
            .send_to(b"ping", relay.addr())
            .await
            .expect("send ping");
        assert_eq!(recv(&client).await, b"ping");
        let rtt = t0.elapsed();
        assert!(rtt >= 2 * delay, "round trip {rtt:?} under 2 x {delay:?}");

        // A burst: every packet comes back, in order (no loss, the queue holds them).
        let sent: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1000]).collect();
        for p in &sent {
            client.send_to(p, relay.addr()).await.expect("send");
        }
        for p in &sent {
            assert_eq!(&recv(&client).await, p);
        }

        // A second client has its own mapping: its echoes come to it, not to the first.
        let other = UdpSocket::bind("127.0.0.1:0").await.expect("bind other");
        other
            .send_to(b"other", relay.addr())
            .await
            .expect("send other");
        assert_eq!(recv(&other).await, b"other");

        let stats = relay.stats();
        let bytes = 4 + 50 * 1000 + 5;
        for d in [stats.to_target, stats.to_client] {
            assert_eq!(
                d,
                DirStats {
                    packets: 52,
                    bytes,
                    ..DirStats::default()
                },
                "{stats:?}"
            );
        }
        assert_eq!(stats.clients, 2);
        let stopped = relay.stop().await;
        assert_eq!(stopped, stats);
        echo_task.abort();
    }

    #[tokio::test]
    async fn the_cap_paces_a_full_queue_drops_and_loss_is_counted() {
        let (target, echo_task) = echo().await;
        // 1 Mbit/s: a 1000-byte packet takes 8 ms; the queue holds 100 ms (12 packets).
        let relay = Relay::start(
            target,
            RelayConfig {
                rate_bits_per_sec: 1_000_000,
                queue: Duration::from_millis(100),
                ..RelayConfig::default()
            },
        )
        .await
        .expect("relay");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        let t0 = Instant::now();
        for i in 0..10u8 {
            client
                .send_to(&[i; 1000], relay.addr())
                .await
                .expect("send");
        }
        for i in 0..10u8 {
            assert_eq!(recv(&client).await, vec![i; 1000]);
        }
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(80),
            "10 x 1000 bytes at 1 Mbit/s took {took:?}"
        );
        // A burst larger than the queue: the excess is dropped, the rest crosses.
        for i in 0..40u8 {
            client
                .send_to(&[i; 1000], relay.addr())
                .await
                .expect("send");
        }
        let up = settle(&relay, |s| {
            s.to_target.packets + s.to_target.queue_dropped == 50
        })
        .await;
        let up = up.to_target;
        assert!(up.queue_dropped > 0, "{up:?}");
        let crossed = up.packets - 10;
        for _ in 0..crossed {
            recv(&client).await;
        }
        relay.stop().await;

        // Half the packets lost each way, at random: what is not lost crosses.
        let lossy = Relay::start(target, RelayConfig::default().with_loss(0.5))
            .await
            .expect("relay");
        for i in 0..100u8 {
            client.send_to(&[i; 100], lossy.addr()).await.expect("send");
        }
        let stats = settle(&lossy, |s| {
            s.to_target.packets + s.to_target.lost == 100
                && s.to_client.packets + s.to_client.lost == s.to_target.packets
        })
        .await;
        assert!(
            stats.to_target.lost > 0 && stats.to_client.lost > 0,
            "{stats:?}"
        );
        for _ in 0..stats.to_client.packets {
            recv(&client).await;
        }
        echo_task.abort();
    }
}
