//! Python handles of the DHCP and TFTP engines.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use bootgate_io::dhcp::{DhcpEngine as RsDhcp, DhcpEvent, DhcpPolicy, DhcpSettings};
use bootgate_io::ra::{RaResponder as RsRa, RaSettings};
use bootgate_wire::dhcp::{Access, BootTable, Ipv4Net, MacPattern, SubnetBoot};
use bootgate_io::tftp::{TftpEngine as RsTftp, TftpEvent, TftpLimits, TftpSettings};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{Error, Result};

fn ipv4(field: &str, s: &str) -> Result<Ipv4Addr> {
    s.parse().map_err(|_| Error::Value(format!("{field}: {s:?} is not an IPv4 address")))
}

fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The proxyDHCP engine, running on its own thread.
#[derive(Debug)]
#[pyclass(module = "bootgate._native", name = "DhcpEngine")]
pub struct PyDhcpEngine {
    inner: Option<RsDhcp>,
}

/// The policy keywords shared by the constructor and `set_policy`.
struct PolicyArgs {
    tftp_server: String,
    boot_bios: String,
    boot_efi_x64: String,
    script_url: String,
    script_url_http: Option<String>,
    ipxe_encap: Vec<u8>,
    boot_table: HashMap<String, String>,
    mac_allow: Vec<String>,
    mac_deny: Vec<String>,
    known_only: bool,
    known_macs: Vec<String>,
    subnets: Vec<(String, HashMap<String, String>)>,
    response_delay_ms: u32,
    standby: bool,
}

fn boot_table(field: &str, entries: HashMap<String, String>) -> Result<BootTable> {
    let mut t = BootTable::default();
    for (k, v) in entries {
        if !t.set(&k, v) {
            return Err(Error::Value(format!(
                "{field}: unknown boot table key {k:?} (an architecture name such as bios, efi_x64, arm64, \
                 riscv64, loongarch64, with an optional http_ prefix, or default / http_default)"
            )));
        }
    }
    Ok(t)
}

fn mac_patterns(field: &str, items: &[String]) -> Result<Vec<MacPattern>> {
    items
        .iter()
        .map(|s| {
            MacPattern::parse(s).ok_or_else(|| {
                Error::Value(format!("{field}: {s:?} is not a MAC address or prefix (1 to 6 hex bytes, aa:bb:cc)"))
            })
        })
        .collect()
}

fn dhcp_policy(a: PolicyArgs) -> Result<DhcpPolicy> {
    let mut known = HashSet::new();
    for m in &a.known_macs {
        match MacPattern::parse(m).map(|p| p.prefix().to_vec()) {
            Some(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&b);
                known.insert(mac);
            }
            _ => return Err(Error::Value(format!("known_macs: {m:?} is not a MAC address"))),
        }
    }
    let mut subnets = Vec::with_capacity(a.subnets.len());
    for (net, entries) in a.subnets {
        let parsed = Ipv4Net::parse(&net)
            .ok_or_else(|| Error::Value(format!("subnets: {net:?} is not an IPv4 network (a.b.c.d/n)")))?;
        subnets.push(SubnetBoot { net: parsed, boot: boot_table(&format!("subnets[{net}]"), entries)? });
    }
    Ok(DhcpPolicy {
        tftp_server: ipv4("tftp_server", &a.tftp_server)?,
        boot_bios: a.boot_bios,
        boot_efi_x64: a.boot_efi_x64,
        script_url: a.script_url,
        script_url_http: a.script_url_http,
        ipxe_encap: a.ipxe_encap,
        boot: boot_table("boot_table", a.boot_table)?,
        access: Access {
            deny: mac_patterns("mac_deny", &a.mac_deny)?,
            allow: mac_patterns("mac_allow", &a.mac_allow)?,
            known_only: a.known_only,
            known,
        },
        subnets,
        response_delay_ms: a.response_delay_ms,
        standby: a.standby,
    })
}

#[pymethods]
impl PyDhcpEngine {
    #[new]
    #[pyo3(signature = (*, interface, bind_ip, server_ip, port, pxe_port, client_port, broadcast_ip,
                        tftp_server, boot_bios, boot_efi_x64, script_url, script_url_http=None,
                        ipxe_encap=Vec::new(), boot_table=HashMap::new(), mac_allow=Vec::new(),
                        mac_deny=Vec::new(), known_only=false, known_macs=Vec::new(), subnets=Vec::new(),
                        response_delay_ms=0, standby=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        interface: Option<String>,
        bind_ip: &str,
        server_ip: &str,
        port: u16,
        pxe_port: u16,
        client_port: u16,
        broadcast_ip: &str,
        tftp_server: String,
        boot_bios: String,
        boot_efi_x64: String,
        script_url: String,
        script_url_http: Option<String>,
        ipxe_encap: Vec<u8>,
        boot_table: HashMap<String, String>,
        mac_allow: Vec<String>,
        mac_deny: Vec<String>,
        known_only: bool,
        known_macs: Vec<String>,
        subnets: Vec<(String, HashMap<String, String>)>,
        response_delay_ms: u32,
        standby: bool,
    ) -> Result<Self> {
        let settings = DhcpSettings {
            interface,
            bind_ip: ipv4("bind_ip", bind_ip)?,
            server_ip: ipv4("server_ip", server_ip)?,
            port,
            pxe_port,
            client_port,
            broadcast_ip: ipv4("broadcast_ip", broadcast_ip)?,
        };
        let policy = dhcp_policy(PolicyArgs {
            tftp_server,
            boot_bios,
            boot_efi_x64,
            script_url,
            script_url_http,
            ipxe_encap,
            boot_table,
            mac_allow,
            mac_deny,
            known_only,
            known_macs,
            subnets,
            response_delay_ms,
            standby,
        })?;
        let engine = py.allow_threads(|| RsDhcp::start(settings, policy))?;
        Ok(Self { inner: Some(engine) })
    }

    /// Replaces the policy whole; the engine answers by it from its next packet on.
    #[pyo3(signature = (*, tftp_server, boot_bios, boot_efi_x64, script_url, script_url_http=None,
                        ipxe_encap=Vec::new(), boot_table=HashMap::new(), mac_allow=Vec::new(),
                        mac_deny=Vec::new(), known_only=false, known_macs=Vec::new(), subnets=Vec::new(),
                        response_delay_ms=0, standby=false))]
    #[allow(clippy::too_many_arguments)]
    fn set_policy(
        &self,
        tftp_server: String,
        boot_bios: String,
        boot_efi_x64: String,
        script_url: String,
        script_url_http: Option<String>,
        ipxe_encap: Vec<u8>,
        boot_table: HashMap<String, String>,
        mac_allow: Vec<String>,
        mac_deny: Vec<String>,
        known_only: bool,
        known_macs: Vec<String>,
        subnets: Vec<(String, HashMap<String, String>)>,
        response_delay_ms: u32,
        standby: bool,
    ) -> Result<()> {
        let policy = dhcp_policy(PolicyArgs {
            tftp_server,
            boot_bios,
            boot_efi_x64,
            script_url,
            script_url_http,
            ipxe_encap,
            boot_table,
            mac_allow,
            mac_deny,
            known_only,
            known_macs,
            subnets,
            response_delay_ms,
            standby,
        })?;
        self.engine()?.set_policy(policy);
        Ok(())
    }

    fn counters(&self) -> Result<Vec<(&'static str, u64)>> {
        Ok(self.engine()?.counters())
    }

    #[pyo3(signature = (max=1024))]
    fn drain_events<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let events = self.engine()?.drain_events(max);
        events.iter().map(|e| dhcp_event(py, e)).collect()
    }

    fn event_fd(&self) -> Result<i32> {
        Ok(self.engine()?.event_fd())
    }

    fn local_ports(&self) -> Result<(u16, u16)> {
        Ok(self.engine()?.local_ports())
    }

    fn stop(&mut self, py: Python<'_>) {
        if let Some(mut e) = self.inner.take() {
            py.allow_threads(move || e.stop());
        }
    }
}

impl PyDhcpEngine {
    fn engine(&self) -> Result<&RsDhcp> {
        self.inner.as_ref().ok_or_else(|| Error::Value("the DHCP engine is stopped".into()))
    }
}

fn dhcp_event<'py>(py: Python<'py>, e: &DhcpEvent) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("time", e.time)?;
    d.set_item("mac", mac_str(&e.mac))?;
    d.set_item("uuid", e.uuid.as_ref().map(|u| hex(u)))?;
    d.set_item("arch", e.arch)?;
    d.set_item("message_type", e.message_type)?;
    d.set_item("vendor_class", &e.vendor_class)?;
    d.set_item("user_class", &e.user_class)?;
    d.set_item("is_ipxe", e.is_ipxe)?;
    d.set_item("port", e.port)?;
    d.set_item("relay", e.relay.map(|r| r.to_string()))?;
    d.set_item("relay_agent_info", e.relay_agent_info.as_deref().map(hex))?;
    d.set_item("answer", &e.answer)?;
    d.set_item("reason", e.reason)?;
    d.set_item("delayed", e.delayed)?;
    Ok(d)
}

/// The TFTP engine, running on its own thread.
#[derive(Debug)]
#[pyclass(module = "bootgate._native", name = "TftpEngine")]
pub struct PyTftpEngine {
    inner: Option<RsTftp>,
}

#[pymethods]
impl PyTftpEngine {
    #[new]
    #[pyo3(signature = (*, bind, root, max_blksize=1468, timeout_ms=1000, retries=5, max_transfers=4096,
                        max_queued=4096, max_per_client=0, single_port=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        bind: &str,
        root: PathBuf,
        max_blksize: u16,
        timeout_ms: u64,
        retries: u32,
        max_transfers: usize,
        max_queued: usize,
        max_per_client: usize,
        single_port: bool,
    ) -> Result<Self> {
        let bind: SocketAddr =
            bind.parse().map_err(|_| Error::Value(format!("bind: {bind:?} is not an address:port")))?;
        let settings = TftpSettings { bind, root, max_blksize, timeout_ms, retries, max_transfers };
        let limits = TftpLimits { max_queued, max_per_client, single_port };
        let engine = py.allow_threads(|| RsTftp::start_with(settings, limits))?;
        Ok(Self { inner: Some(engine) })
    }

    fn counters(&self) -> Result<Vec<(&'static str, u64)>> {
        Ok(self.engine()?.counters())
    }

    #[pyo3(signature = (max=1024))]
    fn drain_events<'py>(&self, py: Python<'py>, max: usize) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let events = self.engine()?.drain_events(max);
        events.iter().map(|e| tftp_event(py, e)).collect()
    }

    fn event_fd(&self) -> Result<i32> {
        Ok(self.engine()?.event_fd())
    }

    fn local_addr(&self) -> Result<(String, u16)> {
        let a = self.engine()?.local_addr();
        Ok((a.ip().to_string(), a.port()))
    }

    fn stop(&mut self, py: Python<'_>) {
        if let Some(mut e) = self.inner.take() {
            py.allow_threads(move || e.stop());
        }
    }
}

impl PyTftpEngine {
    fn engine(&self) -> Result<&RsTftp> {
        self.inner.as_ref().ok_or_else(|| Error::Value("the TFTP engine is stopped".into()))
    }
}

fn tftp_event<'py>(py: Python<'py>, e: &TftpEvent) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("time", e.time)?;
    d.set_item("client", e.client.to_string())?;
    d.set_item("file", &e.file)?;
    d.set_item("ok", e.ok)?;
    d.set_item("bytes", e.bytes)?;
    d.set_item("duration", e.duration)?;
    d.set_item("error", &e.error)?;
    Ok(d)
}

/// The IPv6 router-advertisement responder ("no router here"), on its own thread.
#[derive(Debug)]
#[pyclass(module = "bootgate._native", name = "RaResponder")]
pub struct PyRaResponder {
    inner: Option<RsRa>,
}

#[pymethods]
impl PyRaResponder {
    #[new]
    #[pyo3(signature = (*, interface, unsolicited=true, min_interval_ms=3000))]
    fn new(py: Python<'_>, interface: String, unsolicited: bool, min_interval_ms: u64) -> Result<Self> {
        let settings = RaSettings {
            interface,
            unsolicited,
            min_multicast_interval: std::time::Duration::from_millis(min_interval_ms),
        };
        Ok(Self { inner: Some(py.allow_threads(|| RsRa::start(settings))?) })
    }

    fn counters(&self) -> Result<Vec<(&'static str, u64)>> {
        let ra = self.inner.as_ref().ok_or_else(|| Error::Value("the RA responder is stopped".into()))?;
        Ok(ra.counters())
    }

    fn stop(&mut self, py: Python<'_>) {
        if let Some(mut r) = self.inner.take() {
            py.allow_threads(move || r.stop());
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyDhcpEngine>()?;
    m.add_class::<PyRaResponder>()?;
    m.add_class::<PyTftpEngine>()?;
    Ok(())
}
