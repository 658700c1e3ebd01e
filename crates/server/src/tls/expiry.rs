//! A warning in the log when a certificate the member serves with is close to expiry: at
//! start and once a day after, for each certificate file (client and peer), so an operator has
//! a month to rotate it. Rotated files are read again at each check.

use std::time::Duration;

/// How long before expiry the warning starts.
pub const WARN_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// How often the files are checked.
const INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Checks `files` now and then daily, in the background.
pub fn spawn(files: Vec<String>) {
    if files.is_empty() {
        return;
    }
    tokio::spawn(async move {
        loop {
            for f in &files {
                check(f);
            }
            tokio::time::sleep(INTERVAL).await;
        }
    });
}

/// Logs a warning when the certificate in `file` expires within [`WARN_BEFORE`] (or has).
pub fn check(file: &str) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let Some(cert) = oxcd_pki::inspect_pem(&text)
        .ok()
        .and_then(|c| c.into_iter().next())
    else {
        return;
    };
    if !cert.expires_within(WARN_BEFORE) {
        return;
    }
    let expires = humantime::format_rfc3339_seconds(cert.not_after).to_string();
    let left = cert.remaining();
    if left.is_zero() {
        tracing::warn!(
            "cert-file" = %file,
            subject = %cert.subject,
            expires = %expires,
            "certificate has expired"
        );
    } else {
        // Whole minutes: the seconds are noise in a warning about days.
        let left = Duration::from_secs(left.as_secs() / 60 * 60);
        tracing::warn!(
            "cert-file" = %file,
            subject = %cert.subject,
            expires = %expires,
            "time-left" = %humantime::format_duration(left),
            "certificate is close to expiry"
        );
    }
}
