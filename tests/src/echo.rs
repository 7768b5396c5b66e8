//! Echo servers that say who they are, for the service tests: a TCP or UDP server in a
//! pod answers `NAME:` followed by what it received.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::traffic;

/// Serves TCP echo on `port` inside `ns` until the test process ends.
pub fn tcp_server(ns: &Path, port: u16, name: &str) -> Result<()> {
    let listener: TcpListener = traffic::listen_tcp(ns, port)?;
    let name = name.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(format!("{name}:").as_bytes());
                let _ = s.write_all(&buf);
            });
        }
    });
    Ok(())
}

/// Serves interactive TCP echo on `port` inside `ns`: every read is answered at once
/// with `NAME:` and what was read (a connection can stay open and idle between).
pub fn tcp_chat_server(ns: &Path, port: u16, name: &str) -> Result<()> {
    let listener: TcpListener = traffic::listen_tcp(ns, port)?;
    let name = name.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = s.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut reply = format!("{name}:").into_bytes();
                    reply.extend_from_slice(&chunk[..n]);
                    if s.write_all(&reply).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

/// One request on an open connection to a chat server: who answered.
pub fn chat(s: &mut std::net::TcpStream, data: &[u8]) -> Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(data)?;
    let mut reply = vec![0u8; 4096];
    let n = s.read(&mut reply).context("reading the answer")?;
    if n == 0 {
        bail!("the connection was closed");
    }
    split_echo(&reply[..n], data)
}

/// Serves UDP echo on `port` inside `ns` until the test process ends.
pub fn udp_server(ns: &Path, port: u16, name: &str) -> Result<()> {
    let sock: UdpSocket = traffic::udp_socket(ns, port)?;
    let name = name.to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let mut reply = format!("{name}:").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&reply, from);
        }
    });
    Ok(())
}

/// One TCP exchange from `ns` to `to`: sends `data`, returns who answered, after
/// checking the echo.
pub fn tcp_exchange(ns: &Path, to: SocketAddr, data: &[u8]) -> Result<String> {
    tcp_exchange_on(traffic::connect_tcp(ns, to)?, data)
}

/// The same exchange on a connection already made.
pub fn tcp_exchange_on(mut s: std::net::TcpStream, data: &[u8]) -> Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(data)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).context("reading the echo")?;
    split_echo(&reply, data)
}

/// One UDP request and its reply: who answered, and from which address.
pub fn udp_exchange(ns: &Path, to: SocketAddr, data: &[u8]) -> Result<(String, SocketAddr)> {
    let sock: UdpSocket = traffic::udp_socket(ns, 0)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.send_to(data, to)?;
    let mut buf = [0u8; 2048];
    let (n, from) = sock
        .recv_from(&mut buf)
        .context("waiting for the UDP reply")?;
    Ok((split_echo(&buf[..n], data)?, from))
}

fn split_echo(reply: &[u8], sent: &[u8]) -> Result<String> {
    let Some(colon) = reply.iter().position(|b| *b == b':') else {
        bail!(
            "the reply {:?} has no NAME: prefix",
            String::from_utf8_lossy(reply)
        );
    };
    if &reply[colon + 1..] != sent {
        bail!(
            "the echo differs from what was sent ({} bytes back, {} sent)",
            reply.len() - colon - 1,
            sent.len()
        );
    }
    Ok(String::from_utf8_lossy(&reply[..colon]).into_owned())
}
