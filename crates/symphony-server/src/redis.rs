//! A small Redis client (RESP2 over TCP) for the shared tiers: rate-limit counters and the
//! response cache. Only the handful of commands those need; one connection, reopened after
//! an error. Callers treat Redis as best effort: an unreachable Redis never fails a request.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL '{0}': expected redis://[:password@]host[:port][/db]")]
    Url(String),
    #[error("Redis: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis replied with an error: {0}")]
    Server(String),
    #[error("Redis sent an unexpected reply")]
    Protocol,
    #[error("Redis did not answer in time")]
    Timeout,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Reply>),
    Status(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    addr: String,
    password: Option<String>,
    db: Option<u32>,
}

fn parse_url(url: &str) -> Result<Target, RedisError> {
    let bad = || RedisError::Url(url.to_string());
    let rest = url.strip_prefix("redis://").ok_or_else(bad)?;
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (host, db) = match rest.split_once('/') {
        Some((h, "")) => (h, None),
        Some((h, d)) => (h, Some(d.parse().map_err(|_| bad())?)),
        None => (rest, None),
    };
    if host.is_empty() {
        return Err(bad());
    }
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:6379")
    };
    let password = auth.map(|a| a.rsplit(':').next().unwrap_or(a).to_string());
    Ok(Target { addr, password, db })
}

pub struct Redis {
    target: Target,
    conn: Mutex<Option<BufReader<TcpStream>>>,
}

const TIMEOUT: Duration = Duration::from_secs(2);

impl Redis {
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(Self {
            target: parse_url(url)?,
            conn: Mutex::new(None),
        })
    }

    /// Runs one command; on any failure the connection is dropped and the next call reopens it.
    pub async fn cmd(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut guard = self.conn.lock().await;
        let result = tokio::time::timeout(TIMEOUT, async {
            if guard.is_none() {
                *guard = Some(self.connect().await?);
            }
            let conn = guard.as_mut().expect("connected");
            send(conn, args).await
        })
        .await
        .unwrap_or(Err(RedisError::Timeout));
        if matches!(
            result,
            Err(RedisError::Io(_) | RedisError::Protocol | RedisError::Timeout)
        ) {
            *guard = None;
        }
        result
    }

    async fn connect(&self) -> Result<BufReader<TcpStream>, RedisError> {
        let stream = TcpStream::connect(&self.target.addr).await?;
        stream.set_nodelay(true)?;
        let mut conn = BufReader::new(stream);
        if let Some(password) = &self.target.password {
            send(&mut conn, &[b"AUTH", password.as_bytes()]).await?;
        }
        if let Some(db) = self.target.db {
            send(&mut conn, &[b"SELECT", db.to_string().as_bytes()]).await?;
        }
        Ok(conn)
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        match self.cmd(&[b"PING"]).await? {
            Reply::Status(s) if s == "PONG" => Ok(()),
            _ => Err(RedisError::Protocol),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.cmd(&[b"GET", key.as_bytes()]).await? {
            Reply::Nil => Ok(None),
            Reply::Bytes(b) => Ok(Some(b)),
            _ => Err(RedisError::Protocol),
        }
    }

    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let secs = ttl.as_secs().max(1).to_string();
        self.cmd(&[b"SET", key.as_bytes(), value, b"EX", secs.as_bytes()])
            .await
            .map(|_| ())
    }

    /// `INCRBY key by`, setting the key to expire after `ttl` when it is new.
    pub async fn incr_by(
        &self,
        key: &str,
        by: u64,
        ttl: Option<Duration>,
    ) -> Result<i64, RedisError> {
        let n = match self
            .cmd(&[b"INCRBY", key.as_bytes(), by.to_string().as_bytes()])
            .await?
        {
            Reply::Int(n) => n,
            _ => return Err(RedisError::Protocol),
        };
        if let (Some(ttl), true) = (ttl, n as u64 == by) {
            let secs = ttl.as_secs().max(1).to_string();
            self.cmd(&[b"EXPIRE", key.as_bytes(), secs.as_bytes()])
                .await?;
        }
        Ok(n)
    }

    pub async fn get_int(&self, key: &str) -> Result<i64, RedisError> {
        match self.get(key).await? {
            None => Ok(0),
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(RedisError::Protocol),
        }
    }
}

async fn send(conn: &mut BufReader<TcpStream>, args: &[&[u8]]) -> Result<Reply, RedisError> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a);
        buf.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&buf).await?;
    read_reply(conn).await
}

async fn read_line(conn: &mut BufReader<TcpStream>) -> Result<String, RedisError> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(RedisError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(line.trim_end_matches("\r\n").to_string())
}

fn read_reply(
    conn: &mut BufReader<TcpStream>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Reply, RedisError>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(conn).await?;
        let (kind, rest) = line.split_at(line.len().min(1));
        let int = || rest.parse::<i64>().map_err(|_| RedisError::Protocol);
        match kind {
            "+" => Ok(Reply::Status(rest.to_string())),
            "-" => Err(RedisError::Server(rest.to_string())),
            ":" => Ok(Reply::Int(int()?)),
            "$" => {
                let n = int()?;
                if n < 0 {
                    return Ok(Reply::Nil);
                }
                let mut data = vec![0u8; n as usize + 2];
                conn.read_exact(&mut data).await?;
                data.truncate(n as usize);
                Ok(Reply::Bytes(data))
            }
            "*" => {
                let n = int()?;
                if n < 0 {
                    return Ok(Reply::Nil);
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(read_reply(conn).await?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(RedisError::Protocol),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.db, t.password),
            ("127.0.0.1:6380", Some(2), None)
        );
        let t = parse_url("redis://:pw@localhost").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.password.as_deref()),
            ("localhost:6379", Some("pw"))
        );
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("redis:///1").is_err());
    }
}
