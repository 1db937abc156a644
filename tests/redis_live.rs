//! The global bucket script against a real redis-server (from tests/peers/install_redis.sh), over blocking sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::RedisServer as Server;
use ringgate::ratelimit::redis::{self, GlobalLimit, Mode, Reply, ReplyReader};

fn connect(server: &Server) -> Conn {
    let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    Conn { stream, reader: ReplyReader::new(), out: Vec::new() }
}

/// One blocking connection driving the codec the way the gateway's monoio client will.
struct Conn {
    stream: TcpStream,
    reader: ReplyReader,
    out: Vec<u8>,
}

impl Conn {
    fn send(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Reply {
        self.out.clear();
        encode(&mut self.out);
        self.stream.write_all(&self.out).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(reply) = self.reader.next_reply().unwrap() {
                return reply;
            }
            // a signal to the test process (a child exiting) can interrupt the read
            let n = match self.stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r.unwrap(),
            };
            assert!(n > 0, "redis closed the connection");
            self.reader.feed(&buf[..n]);
        }
    }

    fn cmd(&mut self, args: &[&[u8]]) -> Reply {
        self.send(|out| redis::encode_command(out, args))
    }

    fn load_script(&mut self) -> Vec<u8> {
        match self.send(redis::encode_script_load) {
            Reply::Bulk(Some(sha)) => sha,
            other => panic!("SCRIPT LOAD: {other:?}"),
        }
    }

    fn run(&mut self, sha: &[u8], key: &str, l: &GlobalLimit, cost: i64, mode: Mode) -> ringgate::ratelimit::Verdict {
        let reply = self.send(|out| redis::encode_evalsha(out, sha, key.as_bytes(), l, cost, mode));
        redis::parse_verdict(&reply, l).unwrap()
    }

    /// The server clock in microseconds since the Unix epoch.
    fn time_us(&mut self) -> u64 {
        let Reply::Array(Some(parts)) = self.cmd(&[b"TIME"]) else { panic!("TIME") };
        let num = |r: &Reply| match r {
            Reply::Bulk(Some(b)) => std::str::from_utf8(b).unwrap().parse::<u64>().unwrap(),
            other => panic!("TIME part {other:?}"),
        };
        num(&parts[0]) * 1_000_000 + num(&parts[1])
    }
}

#[test]
fn global_count_is_exact_across_connections() {
    let server = Server::start();
    let mut admin = connect(&server);
    let sha = Arc::new(admin.load_script());
    // One fill per 100 years (ticks count from the Unix epoch, next one in 2069): nothing refills mid-test.
    let limit = GlobalLimit::new(1000, 1000, Duration::from_secs(100 * 365 * 24 * 3600)).unwrap();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (mut conn, sha) = (connect(&server), sha.clone());
            std::thread::spawn(move || {
                let mut allowed = 0u64;
                for _ in 0..800 {
                    let v = conn.run(&sha, "rl:exact", &limit, 1, Mode::Take);
                    if v.allowed {
                        allowed += 1;
                    } else {
                        assert_eq!(v.remaining, 0);
                        assert!(v.retry_after.is_some_and(|d| d == v.reset_after && d > Duration::ZERO), "{v:?}");
                    }
                }
                allowed
            })
        })
        .collect();
    let per_thread: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(per_thread.iter().sum::<u64>(), 1000, "{per_thread:?}");
    assert!(per_thread.iter().all(|&n| n > 0), "both connections were served: {per_thread:?}");
    let v = admin.run(&sha, "rl:exact", &limit, 0, Mode::Take);
    assert_eq!((v.allowed, v.remaining), (false, 0));
}

#[test]
fn script_behaves_like_the_local_bucket() {
    let server = Server::start();
    let mut c = connect(&server);
    let sha = c.load_script();
    assert_eq!(sha, redis::script_sha1(), "the hash computed locally is the one Redis uses");
    let l = GlobalLimit::new(5, 5, Duration::from_secs(3600)).unwrap();
    let v = c.run(&sha, "rl:a", &l, 3, Mode::Take);
    assert_eq!((v.allowed, v.limit, v.remaining, v.retry_after), (true, 5, 2, None));
    // Fills are whole hours of the server's clock since the Unix epoch.
    let to_hour = Duration::from_micros(3_600_000_000 - c.time_us() % 3_600_000_000);
    let hour = Duration::from_secs(3600);
    // reset_after - to_hour is the time between the two calls, modulo an hour boundary between them.
    let gap = (v.reset_after + hour - to_hour).as_micros() % hour.as_micros();
    assert!(gap < 1_000_000, "{v:?} vs {to_hour:?}");
    let v = c.run(&sha, "rl:a", &l, 3, Mode::Take);
    assert_eq!((v.allowed, v.remaining), (false, 2));
    assert_eq!(v.retry_after, Some(v.reset_after), "one fill makes room");
    // Keys are separate buckets.
    assert_eq!(c.run(&sha, "rl:b", &l, 5, Mode::Take).remaining, 0);
    // Amend: charge past empty clamps at empty, refunds come back, a full bucket is deleted.
    assert_eq!(c.run(&sha, "rl:a", &l, 100, Mode::Amend).remaining, 0);
    assert!(!c.run(&sha, "rl:a", &l, 0, Mode::Take).allowed);
    let Reply::Integer(pttl) = c.cmd(&[b"PTTL", b"rl:a"]) else { panic!("PTTL") };
    assert!(pttl > 0 && pttl <= 3_600_001, "idle keys expire when they would be full again: {pttl}");
    assert_eq!(c.run(&sha, "rl:a", &l, -4, Mode::Amend).remaining, 4);
    assert_eq!(c.run(&sha, "rl:a", &l, -4, Mode::Amend).remaining, 5);
    assert_eq!(c.cmd(&[b"EXISTS", b"rl:a"]), Reply::Integer(0));
    // A cost above the capacity never fits.
    let v = c.run(&sha, "rl:a", &l, 6, Mode::Take);
    assert_eq!((v.allowed, v.remaining, v.retry_after), (false, 5, Some(Duration::ZERO)));
    // After SCRIPT FLUSH (or a restart) EVALSHA says NOSCRIPT and EVAL still works.
    assert_eq!(c.cmd(&[b"SCRIPT", b"FLUSH"]), Reply::Simple(b"OK".to_vec()));
    let reply = c.send(|out| redis::encode_evalsha(out, &sha, b"rl:a", &l, 1, Mode::Take));
    assert!(redis::is_noscript(&reply), "{reply:?}");
    let reply = c.send(|out| redis::encode_eval(out, b"rl:a", &l, 1, Mode::Take));
    assert_eq!(redis::parse_verdict(&reply, &l).unwrap().remaining, 4);
}

#[test]
fn fills_follow_the_server_clock() {
    let server = Server::start();
    let mut c = connect(&server);
    let sha = c.load_script();
    let l = GlobalLimit::new(4, 2, Duration::from_millis(200)).unwrap();
    let start = Instant::now();
    // Drain until two tokens are refused (a fill may land meanwhile: keep going).
    let denied = loop {
        let v = c.run(&sha, "rl:fill", &l, 2, Mode::Take);
        if !v.allowed {
            break v;
        }
        assert!(start.elapsed() < Duration::from_secs(5));
    };
    let wait = denied.retry_after.unwrap();
    assert!(wait <= Duration::from_millis(200), "{denied:?}");
    // The behaviour under test is time itself: after the announced wait, the two tokens are there.
    std::thread::sleep(wait + Duration::from_millis(2));
    let v = c.run(&sha, "rl:fill", &l, 2, Mode::Take);
    assert!(v.allowed, "{v:?} after {wait:?}");
}

#[test]
fn client_pipelines_calls_on_one_connection_in_order() {
    let server = Server::start();
    let mut admin = connect(&server);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.port));
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap();
    rt.block_on(async {
        let clients = ringgate::ratelimit::redis_client::RedisClients::new(0);
        let conn = clients.conn(addr);
        let hour = Duration::from_secs(3600);
        // All queued before the first reply; bucket i holds i + 1 tokens, so each verdict says whose it is.
        let calls: Vec<_> = (0..300u64)
            .map(|i| {
                let limit = GlobalLimit::new(i + 1, 1, hour).unwrap();
                conn.bucket(format!("rl:pipe:{i}").as_bytes(), limit, 1, Mode::Take).unwrap()
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        for (i, call) in calls.into_iter().enumerate() {
            let v = call.verdict(deadline).await.unwrap();
            assert_eq!((v.allowed, v.limit, v.remaining), (true, i as u64 + 1, i as u64));
        }
        let Reply::Bulk(Some(list)) = admin.cmd(&[b"CLIENT", b"LIST"]) else { panic!("CLIENT LIST") };
        assert_eq!(String::from_utf8_lossy(&list).lines().count(), 2, "this test's connection and the client's one");
    });
}
