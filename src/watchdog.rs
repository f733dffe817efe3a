//! The watchdog (`watchdog:` mode off/automatic/required, `device`, `safety_margin`): armed while
//! this node leads, kept alive after every successful lock renewal, disarmed on a clean demotion,
//! so that a hung leader is reset by the kernel before its lease can expire.
//!
//! Owns: the policy (`Watchdog`). The device sits behind [`WatchdogDevice`] so the policy is tested
//! without `/dev/watchdog`.

use crate::config::validate::{WatchdogConfig, WatchdogMode};
use crate::ha::snapshot::WatchdogState;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// A watchdog device.
pub trait WatchdogDevice: Send {
    /// Open (arm) the device with `timeout`. An error means it cannot be used.
    fn open(&mut self, timeout: Duration) -> std::io::Result<()>;
    /// Keep it alive.
    fn keepalive(&mut self) -> std::io::Result<()>;
    /// Disarm it (magic close) and close it.
    fn close(&mut self) -> std::io::Result<()>;
    /// The device can be opened at all (exists and is writable).
    fn available(&self) -> bool;
}

/// The Linux watchdog character device (`/dev/watchdog`). The timeout is the driver's: praetor
/// does not issue `WDIOC_SETTIMEOUT` (the crate forbids `unsafe`), so configure the driver's
/// timeout to at most `ttl - safety_margin` (module parameter) when using one.
pub struct LinuxDevice {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl LinuxDevice {
    /// A device at `path`, not opened yet.
    pub fn new(path: PathBuf) -> LinuxDevice {
        LinuxDevice { path, file: None }
    }
}

impl WatchdogDevice for LinuxDevice {
    fn open(&mut self, _timeout: Duration) -> std::io::Result<()> {
        if self.file.is_none() {
            self.file = Some(std::fs::OpenOptions::new().write(true).open(&self.path)?);
        }
        Ok(())
    }

    fn keepalive(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => {
                f.write_all(b"\0")?;
                f.flush()
            }
            None => Ok(()),
        }
    }

    fn close(&mut self) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.write_all(b"V")?;
            f.flush()?;
        }
        Ok(())
    }

    fn available(&self) -> bool {
        self.file.is_some() || std::fs::metadata(&self.path).is_ok()
    }
}

/// The watchdog policy of one agent.
pub struct Watchdog {
    mode: WatchdogMode,
    safety_margin: i64,
    device: Box<dyn WatchdogDevice>,
    active: bool,
    failed: bool,
}

impl Watchdog {
    /// From the configuration, with the Linux device.
    pub fn from_config(c: &WatchdogConfig) -> Watchdog {
        Watchdog::new(c.mode, c.safety_margin, Box::new(LinuxDevice::new(c.device.clone())))
    }

    /// With any device.
    pub fn new(mode: WatchdogMode, safety_margin: i64, device: Box<dyn WatchdogDevice>) -> Watchdog {
        Watchdog { mode, safety_margin, device, active: false, failed: false }
    }

    /// The timeout for `ttl`: `ttl - safety_margin`, or `ttl / 2` when the margin is -1.
    pub fn timeout_for(&self, ttl: Duration) -> Duration {
        if self.safety_margin < 0 {
            ttl / 2
        } else {
            ttl.saturating_sub(Duration::from_secs(self.safety_margin as u64)).max(Duration::from_secs(1))
        }
    }

    /// What the HA policy needs to know: `required` without a usable device ⇒ this node never leads.
    pub fn state(&self) -> WatchdogState {
        match self.mode {
            WatchdogMode::Off => WatchdogState::NotRequired,
            WatchdogMode::Automatic => {
                if self.active || (!self.failed && self.device.available()) {
                    WatchdogState::Ready
                } else {
                    WatchdogState::NotRequired
                }
            }
            WatchdogMode::Required => {
                if self.active || (!self.failed && self.device.available()) {
                    WatchdogState::Ready
                } else {
                    WatchdogState::Unusable
                }
            }
        }
    }

    /// `watchdog_failed` of the status JSON: required and not usable.
    pub fn failed(&self) -> bool {
        self.state() == WatchdogState::Unusable
    }

    /// Arm before leading. `Err` only when `required` and the device fails; `automatic` logs and
    /// goes on without it.
    pub fn activate(&mut self, ttl: Duration) -> Result<(), String> {
        if self.mode == WatchdogMode::Off || self.active {
            return Ok(());
        }
        let timeout = self.timeout_for(ttl);
        match self.device.open(timeout) {
            Ok(()) => {
                self.active = true;
                tracing::info!("watchdog activated with {} second timeout", timeout.as_secs());
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                if self.mode == WatchdogMode::Required {
                    Err(format!(
                        "Configuration requires a watchdog, but watchdog could not be activated: {e}"
                    ))
                } else {
                    tracing::warn!("Could not activate watchdog: {e}");
                    Ok(())
                }
            }
        }
    }

    /// Keep alive (after a successful lock renewal).
    pub fn keepalive(&mut self) {
        if self.active
            && let Err(e) = self.device.keepalive()
        {
            tracing::error!("Error while sending keepalive: {e}");
        }
    }

    /// Disarm (clean demotion, pause, shutdown).
    pub fn disable(&mut self) {
        if self.active {
            if let Err(e) = self.device.close() {
                tracing::error!("Error while disabling watchdog: {e}");
            }
            self.active = false;
            tracing::info!("watchdog disabled");
        }
    }

    /// Armed now.
    pub fn is_active(&self) -> bool {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Log(Vec<String>);

    struct Fake {
        present: bool,
        log: Arc<Mutex<Log>>,
    }

    impl WatchdogDevice for Fake {
        fn open(&mut self, t: Duration) -> std::io::Result<()> {
            if !self.present {
                return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no device"));
            }
            self.log.lock().expect("lock").0.push(format!("open {}", t.as_secs()));
            Ok(())
        }
        fn keepalive(&mut self) -> std::io::Result<()> {
            self.log.lock().expect("lock").0.push("keepalive".into());
            Ok(())
        }
        fn close(&mut self) -> std::io::Result<()> {
            self.log.lock().expect("lock").0.push("close".into());
            Ok(())
        }
        fn available(&self) -> bool {
            self.present
        }
    }

    fn wd(mode: WatchdogMode, present: bool) -> (Watchdog, Arc<Mutex<Log>>) {
        let log = Arc::new(Mutex::new(Log::default()));
        (Watchdog::new(mode, 5, Box::new(Fake { present, log: log.clone() })), log)
    }

    #[test]
    fn required_without_device_never_leads() {
        let (mut w, _) = wd(WatchdogMode::Required, false);
        assert_eq!(w.state(), WatchdogState::Unusable);
        assert!(w.activate(Duration::from_secs(30)).is_err());
        assert!(w.failed());
    }

    #[test]
    fn automatic_without_device_does_not_block() {
        let (mut w, _) = wd(WatchdogMode::Automatic, false);
        assert_eq!(w.state(), WatchdogState::NotRequired);
        assert!(w.activate(Duration::from_secs(30)).is_ok());
        assert!(!w.is_active());
    }

    #[test]
    fn armed_with_ttl_minus_margin_kept_alive_and_disarmed() {
        let (mut w, log) = wd(WatchdogMode::Required, true);
        assert_eq!(w.state(), WatchdogState::Ready);
        w.activate(Duration::from_secs(30)).expect("activate");
        w.keepalive();
        w.disable();
        w.keepalive();
        assert_eq!(log.lock().expect("lock").0, vec!["open 25", "keepalive", "close"]);
    }

    #[test]
    fn off_never_touches_the_device() {
        let (mut w, log) = wd(WatchdogMode::Off, true);
        w.activate(Duration::from_secs(30)).expect("activate");
        w.keepalive();
        assert_eq!(w.state(), WatchdogState::NotRequired);
        assert!(log.lock().expect("lock").0.is_empty());
    }

    #[test]
    fn negative_margin_means_half_the_ttl() {
        let (w, _) = wd(WatchdogMode::Automatic, true);
        let w = Watchdog { safety_margin: -1, ..w };
        assert_eq!(w.timeout_for(Duration::from_secs(30)), Duration::from_secs(15));
    }
}
