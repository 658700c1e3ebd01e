//! `oxutl pki`: a certificate authority for a cluster without cfssl or openssl.
//!
//! - `ca`: a CA's `ca.crt` + `ca.key` in a directory;
//! - `issue`: a server, peer or client certificate signed by that CA, for the hosts given;
//! - `show`: what certificates (and CRLs) in files say, and whether they cover given hosts or
//!   expire soon, so an operator checks a certificate before `member add`, not after;
//! - `crl`: a revocation list signed by the CA, for `--client-crl-file`/`--peer-crl-file`.
//!
//! The work is done by the `oxcd_pki` library, which the server and the tests share.

use crate::Failure;
use clap::{Args, Subcommand};
use oxcd_pki::{CertInfo, CertRequest, CrlInfo, KeyAlgo, Pem, Usage};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Subcommand)]
pub enum PkiCmd {
    /// Creates a certificate authority: ca.crt and ca.key in --out-dir
    Ca(CaArgs),
    /// Issues a server, peer or client certificate signed by the CA: NAME.crt and NAME.key
    Issue(IssueArgs),
    /// Shows what certificates and CRLs say; checks the hosts they cover and their expiry
    #[command(
        long_about = "Shows what certificates and CRLs say: subject, issuer, serial, validity, \
            SANs, usages.\n\n\
            With --check-host, exits non-zero unless the first certificate of every FILE covers \
            every HOST (as a TLS client checks it: IPs against IP SANs, names against DNS SANs). \
            With --min-days, exits non-zero if a certificate expires within that many days."
    )]
    Show(ShowArgs),
    /// Writes a certificate revocation list signed by the CA
    Crl(CrlArgs),
}

#[derive(Args)]
pub struct CaArgs {
    /// Directory to write ca.crt and ca.key to (created if missing)
    #[arg(long)]
    out_dir: PathBuf,
    /// Common name of the CA
    #[arg(long, default_value = "oxcd-ca")]
    cn: String,
    /// Key type: ecdsa (P-256), ecdsa-p384, rsa (2048 bits), rsa4096
    #[arg(long, default_value = "ecdsa")]
    key_type: String,
    /// Days the CA is valid for
    #[arg(long, default_value_t = 3650)]
    days: u64,
    /// Replace an existing CA in --out-dir (certificates it issued stop being trusted)
    #[arg(long)]
    force: bool,
}

/// Where the signing CA is: `--ca-dir` as `oxutl pki ca` made it, or any certificate and key
/// files, e.g. cfssl's `ca.pem` and `ca-key.pem` when moving an existing CA over.
#[derive(Args)]
pub struct CaFiles {
    /// Directory holding the CA's ca.crt and ca.key
    #[arg(long, required_unless_present_all = ["ca_cert", "ca_key"])]
    ca_dir: Option<PathBuf>,
    /// The CA certificate, instead of DIR/ca.crt
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The CA key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM), instead of DIR/ca.key
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
}

impl CaFiles {
    fn paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.ca_dir.clone().unwrap_or_default();
        (
            self.ca_cert.clone().unwrap_or_else(|| dir.join("ca.crt")),
            self.ca_key.clone().unwrap_or_else(|| dir.join("ca.key")),
        )
    }

    /// Where issued files go by default: the CA's directory.
    fn dir(&self) -> PathBuf {
        match (&self.ca_dir, &self.ca_cert) {
            (Some(dir), _) => dir.clone(),
            (None, Some(cert)) => cert.parent().map(Path::to_path_buf).unwrap_or_default(),
            (None, None) => PathBuf::new(),
        }
    }

    fn read(&self) -> Result<Pem, Failure> {
        let (crt, key) = self.paths();
        for p in [&crt, &key] {
            if !p.exists() {
                return Err(fail(format!(
                    "{}: no such file (create a CA with `oxutl pki ca --out-dir {}`)",
                    p.display(),
                    self.dir().display()
                )));
            }
        }
        Pem::read_files(&crt, &key).map_err(|e| fail(e.to_string()))
    }
}

#[derive(Args)]
pub struct IssueArgs {
    #[command(flatten)]
    ca: CaFiles,
    /// File name stem: writes NAME.crt and NAME.key
    #[arg(long)]
    name: String,
    /// DNS names and IP addresses the certificate is valid for (comma-separated or repeated);
    /// required for server and peer certificates
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// server (serverAuth + clientAuth: etcd's gateway presents the server certificate to its own
    /// client port), server-only (serverAuth), client (clientAuth), peer (serverAuth + clientAuth)
    #[arg(long)]
    usage: String,
    /// Common name (default NAME); for a client certificate, the user name oxcd and etcd log in
    /// with under --client-cert-auth
    #[arg(long)]
    cn: Option<String>,
    /// Organization (O) of the subject
    #[arg(long)]
    org: Option<String>,
    /// Key type: ecdsa (P-256), ecdsa-p384, rsa (2048 bits), rsa4096
    #[arg(long, default_value = "ecdsa")]
    key_type: String,
    /// Days the certificate is valid for
    #[arg(long, default_value_t = 365)]
    days: u64,
    /// Directory to write to (default --ca-dir)
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Replace existing NAME.crt and NAME.key
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// PEM files: certificates, bundles, CRLs
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Fail unless each file's first certificate covers HOST (repeat for several hosts)
    #[arg(long, value_name = "HOST")]
    check_host: Vec<String>,
    /// Fail if a certificate expires within DAYS
    #[arg(long, value_name = "DAYS")]
    min_days: Option<u64>,
}

#[derive(Args)]
pub struct CrlArgs {
    #[command(flatten)]
    ca: CaFiles,
    /// Serial number (hex, `:` allowed) or certificate file to revoke (comma-separated or
    /// repeated)
    #[arg(long, value_delimiter = ',')]
    revoke: Vec<String>,
    /// File to write the CRL to
    #[arg(long)]
    out: PathBuf,
    /// Keep the serials already revoked by the CRL in --out (when it is this CA's)
    #[arg(long)]
    append: bool,
    /// Days until the CRL's next update
    #[arg(long, default_value_t = 30)]
    days: u64,
}

pub fn run(cmd: PkiCmd, write_out: &str) -> Result<(), Failure> {
    match cmd {
        PkiCmd::Ca(a) => ca(a),
        PkiCmd::Issue(a) => issue(a),
        PkiCmd::Show(a) => show(a, write_out),
        PkiCmd::Crl(a) => crl(a),
    }
}

fn fail(msg: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        msg: msg.into(),
    }
}

impl From<oxcd_pki::PkiError> for Failure {
    fn from(e: oxcd_pki::PkiError) -> Failure {
        fail(e.to_string())
    }
}

fn days(n: u64) -> Result<Duration, Failure> {
    if n == 0 {
        return Err(fail("--days must be at least 1"));
    }
    DAY.checked_mul(u32::try_from(n).unwrap_or(u32::MAX))
        .ok_or_else(|| fail(format!("--days {n} is too large")))
}

fn ca(a: CaArgs) -> Result<(), Failure> {
    let algo: KeyAlgo = a.key_type.parse()?;
    let (crt, key) = (a.out_dir.join("ca.crt"), a.out_dir.join("ca.key"));
    if !a.force {
        refuse_existing(&[&crt, &key], "a CA")?;
    }
    let pem = oxcd_pki::new_ca(&a.cn, algo, days(a.days)?)?;
    write(&a.out_dir, "ca", &pem)?;
    let info = first_cert(&pem.cert)?;
    println!(
        "Created CA {} ({}, serial {}, valid until {})",
        info.subject,
        info.key_algorithm,
        info.serial_hex,
        rfc3339(info.not_after)
    );
    println!("  {}\n  {} (keep secret)", crt.display(), key.display());
    Ok(())
}

fn issue(a: IssueArgs) -> Result<(), Failure> {
    check_stem(&a.name)?;
    let usage: Usage = a.usage.parse()?;
    let algo: KeyAlgo = a.key_type.parse()?;
    let hosts: Vec<String> = a
        .hosts
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() && usage != Usage::Client {
        // Go (since 1.15) and rustls ignore the CN: without SANs nobody can verify the server.
        return Err(fail(
            "--hosts is required for server and peer certificates (the DNS names and IP \
             addresses clients and peers connect to)",
        ));
    }
    let valid_for = days(a.days)?;
    let ca = a.ca.read()?;
    let ca_info = first_cert(&ca.cert)?;
    if !ca_info.is_ca {
        return Err(fail(format!(
            "{} is not a CA certificate",
            a.ca.paths().0.display()
        )));
    }
    if ca_info.expires_within(Duration::ZERO) {
        return Err(fail(format!(
            "the CA certificate expired on {}",
            rfc3339(ca_info.not_after)
        )));
    }
    let out_dir = a.out_dir.unwrap_or_else(|| a.ca.dir());
    let (crt, key) = (
        out_dir.join(format!("{}.crt", a.name)),
        out_dir.join(format!("{}.key", a.name)),
    );
    if !a.force {
        refuse_existing(&[&crt, &key], "a certificate")?;
    }
    let req = CertRequest {
        common_name: a.cn.unwrap_or_else(|| a.name.clone()),
        organization: a.org,
        hosts,
        algo,
        valid_for,
        usage,
    };
    let pem = oxcd_pki::issue(&ca, &req)?;
    write(&out_dir, &a.name, &pem)?;
    let info = first_cert(&pem.cert)?;
    println!(
        "Issued {} certificate {} ({}, serial {}, valid until {})",
        a.usage.to_ascii_lowercase(),
        info.subject,
        info.key_algorithm,
        info.serial_hex,
        rfc3339(info.not_after)
    );
    if !info.dns_names.is_empty() || !info.ip_addresses.is_empty() {
        println!("  covers: {}", sans(&info).join(", "));
    }
    println!("  {}\n  {} (keep secret)", crt.display(), key.display());
    if info.not_after > ca_info.not_after {
        // Verifiers check the whole chain: the certificate is useless once the CA expires.
        eprintln!(
            "warning: the certificate outlives its CA, which expires on {}",
            rfc3339(ca_info.not_after)
        );
    }
    Ok(())
}

fn crl(a: CrlArgs) -> Result<(), Failure> {
    let ca = a.ca.read()?;
    let mut serials = Vec::new();
    if a.append && a.out.exists() {
        let old = read(&a.out)?;
        let not_ours = || fail(format!("{} was not signed by this CA", a.out.display()));
        if !oxcd_pki::crl_is_signed_by(&old, &ca.cert)
            .map_err(|e| fail(format!("{}: {e}", a.out.display())))?
        {
            return Err(not_ours());
        }
        for info in oxcd_pki::inspect_crl_pem(&old)? {
            serials.extend(info.revoked_serials_hex);
        }
    }
    if a.revoke.is_empty() && serials.is_empty() {
        eprintln!("warning: the CRL revokes nothing (no --revoke given)");
    }
    for r in &a.revoke {
        serials.push(revoked_serial(r, &ca)?);
    }
    let text = oxcd_pki::crl(&ca, &serials, days(a.days)?)?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    }
    std::fs::write(&a.out, &text).map_err(|e| fail(format!("{}: {e}", a.out.display())))?;
    let revoked = &oxcd_pki::inspect_crl_pem(&text)?[0].revoked_serials_hex;
    println!(
        "Wrote {} revoking {} certificate(s){}",
        a.out.display(),
        revoked.len(),
        if revoked.is_empty() {
            String::new()
        } else {
            format!(": {}", revoked.join(", "))
        }
    );
    Ok(())
}

/// A `--revoke` value: an existing file is a certificate that this CA signed (checked by its
/// signature: two CAs may share a name), anything else a serial number.
fn revoked_serial(r: &str, ca: &Pem) -> Result<String, Failure> {
    let path = Path::new(r);
    if !path.exists() {
        if r.contains('/') || r.ends_with(".crt") || r.ends_with(".pem") {
            return Err(fail(format!("{r}: no such file")));
        }
        return Ok(r.to_string()); // oxcd_pki::crl checks the hex
    }
    let text = read(path)?;
    let cert = oxcd_pki::inspect_pem(&text)
        .map_err(|e| fail(format!("{r}: {e}")))?
        .remove(0);
    if !oxcd_pki::is_signed_by(&text, &ca.cert)? {
        return Err(fail(format!(
            "{r} was not issued by this CA (its issuer is {})",
            cert.issuer
        )));
    }
    Ok(cert.serial_hex)
}

/// What one file held, for `show`.
struct Shown {
    file: PathBuf,
    certs: Vec<CertInfo>,
    crls: Vec<CrlInfo>,
}

fn show(a: ShowArgs, write_out: &str) -> Result<(), Failure> {
    if !matches!(write_out, "simple" | "json") {
        return Err(fail(format!(
            "unsupported output format {write_out:?} for pki show (simple or json)"
        )));
    }
    let mut shown = Vec::new();
    for file in &a.files {
        let text = read(file)?;
        let certs = oxcd_pki::inspect_pem(&text).unwrap_or_default();
        let crls = oxcd_pki::inspect_crl_pem(&text).unwrap_or_default();
        if certs.is_empty() && crls.is_empty() {
            // Say why: the certificate parser's error names the broken block, if any.
            let why = oxcd_pki::inspect_pem(&text).err().map(|e| e.to_string());
            return Err(fail(format!(
                "{}: {}",
                file.display(),
                why.unwrap_or_else(|| "no certificate or CRL".into())
            )));
        }
        shown.push(Shown {
            file: file.clone(),
            certs,
            crls,
        });
    }
    let checks = host_checks(&shown, &a.check_host)?;
    let expiring = a.min_days.map(|d| expiring(&shown, d)).unwrap_or_default();
    if write_out == "json" {
        println!("{}", to_json(&shown, &checks, &expiring));
    } else {
        print!("{}", to_simple(&shown));
    }
    let mut problems = Vec::new();
    for (file, host, covered) in &checks {
        if !*covered {
            problems.push(format!("{}: host {host} is NOT covered", file.display()));
        } else if write_out == "simple" {
            println!("{}: host {host} is covered", file.display());
        }
    }
    for (file, subject, not_after) in &expiring {
        problems.push(format!(
            "{}: {subject} expires on {} ({})",
            file.display(),
            rfc3339(*not_after),
            days_left(*not_after)
        ));
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(fail(problems.remove(0))),
        n => Err(fail(format!("{n} problems:\n  {}", problems.join("\n  ")))),
    }
}

/// (file, host, covered) for each file whose first certificate is a leaf, and each host: that
/// is the certificate a server presents (the rest of a bundle are its issuers). CA files given
/// alongside, e.g. to see the whole chain, are not checked: a CA covers no host.
fn host_checks(shown: &[Shown], hosts: &[String]) -> Result<Vec<(PathBuf, String, bool)>, Failure> {
    let mut out = Vec::new();
    if hosts.is_empty() {
        return Ok(out);
    }
    let leaves: Vec<_> = shown
        .iter()
        .filter_map(|s| Some((&s.file, s.certs.first().filter(|c| !c.is_ca)?)))
        .collect();
    if leaves.is_empty() {
        return Err(fail(
            "--check-host: none of the files starts with a server or peer certificate",
        ));
    }
    for (file, leaf) in leaves {
        for h in hosts {
            out.push((file.clone(), h.clone(), leaf.covers_host(h)));
        }
    }
    Ok(out)
}

fn expiring(shown: &[Shown], min_days: u64) -> Vec<(PathBuf, String, SystemTime)> {
    let within = DAY.saturating_mul(u32::try_from(min_days).unwrap_or(u32::MAX));
    let mut out = Vec::new();
    for s in shown {
        for c in s.certs.iter().filter(|c| c.expires_within(within)) {
            out.push((s.file.clone(), c.subject.clone(), c.not_after));
        }
    }
    out
}

fn to_simple(shown: &[Shown]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for s in shown {
        let n = s.certs.len();
        for (i, c) in s.certs.iter().enumerate() {
            let of = if n > 1 {
                format!(" [certificate {}/{n}]", i + 1)
            } else {
                String::new()
            };
            let _ = writeln!(out, "{}{of}", s.file.display());
            let row = |out: &mut String, k: &str, v: &str| {
                let _ = writeln!(out, "  {k:<13}{v}");
            };
            row(&mut out, "subject:", &c.subject);
            row(&mut out, "issuer:", &c.issuer);
            row(&mut out, "serial:", &c.serial_hex);
            row(&mut out, "not before:", &rfc3339(c.not_before));
            row(
                &mut out,
                "not after:",
                &format!("{} ({})", rfc3339(c.not_after), days_left(c.not_after)),
            );
            row(&mut out, "key:", &c.key_algorithm);
            row(&mut out, "CA:", if c.is_ca { "yes" } else { "no" });
            row(&mut out, "SANs:", &or_none(&sans(c)));
            row(&mut out, "key usage:", &or_none(&c.key_usage));
            row(&mut out, "ext usage:", &or_none(&c.ext_key_usage));
        }
        for crl in &s.crls {
            let _ = writeln!(out, "{} [CRL]", s.file.display());
            let _ = writeln!(out, "  {:<13}{}", "issuer:", crl.issuer);
            let _ = writeln!(out, "  {:<13}{}", "updated:", rfc3339(crl.this_update));
            let next = crl
                .next_update
                .map(|t| format!("{} ({})", rfc3339(t), days_left(t)))
                .unwrap_or_else(|| "(none)".into());
            let _ = writeln!(out, "  {:<13}{next}", "next update:");
            let _ = writeln!(
                out,
                "  {:<13}{}",
                "revoked:",
                or_none(&crl.revoked_serials_hex)
            );
        }
    }
    out
}

fn to_json(
    shown: &[Shown],
    checks: &[(PathBuf, String, bool)],
    expiring: &[(PathBuf, String, SystemTime)],
) -> Value {
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_else(|e| -(e.duration().as_secs() as i64))
    };
    let mut certs = Vec::new();
    let mut crls = Vec::new();
    for s in shown {
        for (i, c) in s.certs.iter().enumerate() {
            certs.push(json!({
                "file": s.file.display().to_string(),
                "index": i,
                "subject": c.subject,
                "common_name": c.common_name,
                "issuer": c.issuer,
                "serial": c.serial_hex,
                "not_before": rfc3339(c.not_before),
                "not_after": rfc3339(c.not_after),
                "not_after_unix": unix(c.not_after),
                "expired": c.expires_within(Duration::ZERO),
                "dns_names": c.dns_names,
                "ip_addresses": c.ip_addresses.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
                "is_ca": c.is_ca,
                "key_algorithm": c.key_algorithm,
                "key_usage": c.key_usage,
                "ext_key_usage": c.ext_key_usage,
            }));
        }
        for c in &s.crls {
            crls.push(json!({
                "file": s.file.display().to_string(),
                "issuer": c.issuer,
                "this_update": rfc3339(c.this_update),
                "next_update": c.next_update.map(rfc3339),
                "number": c.number_hex,
                "revoked_serials": c.revoked_serials_hex,
            }));
        }
    }
    let checks: Vec<Value> = checks
        .iter()
        .map(|(f, h, ok)| json!({"file": f.display().to_string(), "host": h, "covered": ok}))
        .collect();
    let expiring: Vec<Value> = expiring
        .iter()
        .map(|(f, s, t)| json!({"file": f.display().to_string(), "subject": s, "not_after": rfc3339(*t)}))
        .collect();
    json!({"certificates": certs, "crls": crls, "host_checks": checks, "expiring": expiring})
}

fn sans(c: &CertInfo) -> Vec<String> {
    let dns = c.dns_names.iter().map(|d| format!("DNS:{d}"));
    let ips = c.ip_addresses.iter().map(|ip| format!("IP:{ip}"));
    dns.chain(ips).collect()
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn days_left(t: SystemTime) -> String {
    match t.duration_since(SystemTime::now()) {
        Ok(d) => format!("{} days left", d.as_secs() / 86_400),
        Err(e) => format!("EXPIRED {} days ago", e.duration().as_secs() / 86_400),
    }
}

fn first_cert(pem: &str) -> Result<CertInfo, Failure> {
    Ok(oxcd_pki::inspect_pem(pem)?.remove(0))
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))
}

fn write(dir: &Path, stem: &str, pem: &Pem) -> Result<(), Failure> {
    oxcd_pki::write_pem_files(dir, stem, pem)
        .map(|_| ())
        .map_err(|e| fail(format!("writing to {}: {e}", dir.display())))
}

fn refuse_existing(paths: &[&Path], what: &str) -> Result<(), Failure> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(fail(format!(
            "{} already exists; refusing to replace {what} (use --force)",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// NAME becomes a file name: no directories, no hidden files.
fn check_stem(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(fail(format!(
            "invalid --name {name:?} (letters, digits, '-', '_', '.', '@'; it names NAME.crt and NAME.key)"
        )))
    }
}
