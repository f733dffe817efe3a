//! The watchdog (`watchdog:` mode off/automatic/required, `device`, `safety_margin`): armed while
//! this node leads with a timeout of `ttl - safety_margin` (`ttl / 2` when the margin is -1), kept
//! alive after every successful lock renewal, disarmed (magic close) on a clean demotion, so that a
//! hung leader is reset by the kernel before its lease can expire.
//!
//! Owns: the policy (`Watchdog`, Patroni `watchdog/base.py`). The device sits behind
//! [`WatchdogDevice`] so the policy is tested without `/dev/watchdog`; [`LinuxDevice`] is the real
//! one (`watchdog/linux.py`: `WDIOC_GETSUPPORT`, `WDIOC_SETTIMEOUT`, `WDIOC_GETTIMEOUT`).
//!
//! The rules, as Patroni applies them when this node is about to lead:
//! - `timeout - loop_wait < 0` (no timing slack): no watchdog can be safe, so none is used;
//! - the device is opened, its timeout set to `timeout` when the driver supports it (values outside
//!   1..65535, or refused by the driver, e.g. below its minimum, make activation fail) and read back;
//! - a timeout read back shorter than `loop_wait` would reset a healthy leader: the device is
//!   disarmed again;
//! - no running device, or one whose timeout is longer than `timeout`: `required` refuses to lead,
//!   `automatic` warns and leads (without a device, or with the longer timeout).
//!
//! After a failed activation the device is not tried again until the configuration changes (as
//! Patroni, to avoid a log line every cycle); `required` then means this node never takes the lock.

use crate::config::validate::{WatchdogConfig, WatchdogMode};
use crate::ha::snapshot::WatchdogState;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// `WDIOF_SETTIMEOUT`: the driver accepts `WDIOC_SETTIMEOUT`.
pub const WDIOF_SETTIMEOUT: u32 = 0x0080;
/// `WDIOF_MAGICCLOSE`: writing `V` before closing disarms the device.
pub const WDIOF_MAGICCLOSE: u32 = 0x0100;

/// A watchdog device (Patroni `WatchdogBase`). Timeouts are whole seconds, as in the kernel API.
pub trait WatchdogDevice: Send {
    /// Open the device. Opening a Linux watchdog arms it: keepalives must follow.
    fn open(&mut self) -> std::io::Result<()>;
    /// Open now.
    fn is_open(&self) -> bool;
    /// The driver's `WDIOF_*` option bits (`WDIOC_GETSUPPORT`).
    fn support(&mut self) -> std::io::Result<u32>;
    /// Set the timeout (`WDIOC_SETTIMEOUT`).
    fn set_timeout(&mut self, secs: u32) -> std::io::Result<()>;
    /// The timeout in effect (`WDIOC_GETTIMEOUT`).
    fn get_timeout(&mut self) -> std::io::Result<u32>;
    /// Keep it alive.
    fn keepalive(&mut self) -> std::io::Result<()>;
    /// Disarm it (magic close `V`) and close it.
    fn close(&mut self) -> std::io::Result<()>;
    /// The device exists and is writable (Patroni `is_healthy`).
    fn available(&self) -> bool;
    /// Name for the log.
    fn describe(&self) -> String;
}

/// The kernel's watchdog ioctls (`linux/watchdog.h`).
#[allow(unsafe_code)]
mod wdioc {
    /// `struct watchdog_info`.
    #[repr(C)]
    pub struct WatchdogInfo {
        pub options: u32,
        pub firmware_version: u32,
        pub identity: [u8; 32],
    }
    nix::ioctl_read!(get_support, b'W', 0, WatchdogInfo);
    nix::ioctl_readwrite!(set_timeout, b'W', 6, nix::libc::c_int);
    nix::ioctl_read!(get_timeout, b'W', 7, nix::libc::c_int);
}

/// The Linux watchdog character device (`/dev/watchdog`).
pub struct LinuxDevice {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl LinuxDevice {
    /// A device at `path`, not opened yet.
    pub fn new(path: PathBuf) -> LinuxDevice {
        LinuxDevice { path, file: None }
    }

    fn fd(&self) -> std::io::Result<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.file
            .as_ref()
            .map(|f| f.as_raw_fd())
            .ok_or_else(|| std::io::Error::other("watchdog device is closed"))
    }
}

impl WatchdogDevice for LinuxDevice {
    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new().write(true).open(&self.path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("Can't open watchdog device {}: {e}", self.path.display()),
                )
            })?;
            self.file = Some(f);
        }
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.file.is_some()
    }

    #[allow(unsafe_code)]
    fn support(&mut self) -> std::io::Result<u32> {
        let fd = self.fd()?;
        let mut info = wdioc::WatchdogInfo { options: 0, firmware_version: 0, identity: [0; 32] };
        // SAFETY: `fd` is the open descriptor owned by `self.file` for the whole call, and `info` is
        // a live, properly aligned `struct watchdog_info` that the kernel fills (the size is the one
        // encoded in the request number).
        unsafe { wdioc::get_support(fd, &mut info) }.map_err(|e| {
            std::io::Error::other(format!("Could not get information about watchdog device: {e}"))
        })?;
        Ok(info.options)
    }

    #[allow(unsafe_code)]
    fn set_timeout(&mut self, secs: u32) -> std::io::Result<()> {
        if !(1..0xFFFF).contains(&secs) {
            return Err(std::io::Error::other(format!(
                "Invalid timeout {secs}. Supported values are between 1 and 65535"
            )));
        }
        let fd = self.fd()?;
        let mut t = secs as nix::libc::c_int;
        // SAFETY: `fd` is the open descriptor owned by `self.file`; `t` is a live `c_int` the kernel
        // reads and overwrites with the timeout it chose (`_IOWR('W', 6, int)`).
        unsafe { wdioc::set_timeout(fd, &mut t) }
            .map_err(|e| std::io::Error::other(format!("Could not set timeout on watchdog device: {e}")))?;
        Ok(())
    }

    #[allow(unsafe_code)]
    fn get_timeout(&mut self) -> std::io::Result<u32> {
        let fd = self.fd()?;
        let mut t: nix::libc::c_int = 0;
        // SAFETY: `fd` is the open descriptor owned by `self.file`; `t` is a live `c_int` the kernel
        // writes (`_IOR('W', 7, int)`).
        unsafe { wdioc::get_timeout(fd, &mut t) }
            .map_err(|e| std::io::Error::other(format!("Could not get timeout on watchdog device: {e}")))?;
        Ok(u32::try_from(t).unwrap_or(0))
    }

    fn keepalive(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => {
                f.write_all(b"1")?;
                f.flush()
            }
            None => Err(std::io::Error::other("watchdog device is closed")),
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
        self.file.is_some()
            || std::fs::metadata(&self.path).is_ok()
                && nix::unistd::access(&self.path, nix::unistd::AccessFlags::W_OK).is_ok()
    }

    fn describe(&self) -> String {
        if self.path == std::path::Path::new("/dev/watchdog") {
            "Linux watchdog device".to_string()
        } else {
            format!("Linux watchdog device at {}", self.path.display())
        }
    }
}

/// The watchdog policy of one agent (Patroni `Watchdog`).
pub struct Watchdog {
    mode: WatchdogMode,
    safety_margin: i64,
    device: Box<dyn WatchdogDevice>,
    /// `ttl` and `loop_wait` of the dynamic configuration, in seconds.
    timing: (u64, u64),
    /// The timeout set on the running device (to re-apply a changed `ttl` at the next keepalive).
    applied_timeout: Option<u64>,
    /// Armed now.
    active: bool,
    /// The last activation failed: do not retry until the configuration changes.
    failed: bool,
}

impl Watchdog {
    /// From the configuration, with the Linux device.
    pub fn from_config(c: &WatchdogConfig) -> Watchdog {
        Watchdog::new(c.mode, c.safety_margin, Box::new(LinuxDevice::new(c.device.clone())))
    }

    /// With any device. `ttl`/`loop_wait` start at Patroni's defaults until [`Watchdog::set_timing`].
    pub fn new(mode: WatchdogMode, safety_margin: i64, device: Box<dyn WatchdogDevice>) -> Watchdog {
        Watchdog {
            mode,
            safety_margin,
            device,
            timing: (30, 10),
            applied_timeout: None,
            active: false,
            failed: false,
        }
    }

    /// The current `ttl` and `loop_wait` (called every cycle with the dynamic configuration). A
    /// change makes a failed device worth another try, as a configuration change does in Patroni.
    pub fn set_timing(&mut self, ttl: Duration, loop_wait: Duration) {
        let t = (ttl.as_secs(), loop_wait.as_secs());
        if t != self.timing {
            self.timing = t;
            self.failed = false;
        }
    }

    /// The watchdog timeout in seconds: `ttl - safety_margin`, or `ttl / 2` when the margin is -1.
    pub fn timeout(&self) -> i64 {
        let ttl = self.timing.0 as i64;
        if self.safety_margin == -1 { ttl / 2 } else { ttl - self.safety_margin }
    }

    /// `timeout - loop_wait`: how late a keepalive may come. Negative: no watchdog is safe.
    pub fn timing_slack(&self) -> i64 {
        self.timeout() - self.timing.1 as i64
    }

    /// What the HA policy needs to know: `required` without a usable device ⇒ this node never leads.
    pub fn state(&self) -> WatchdogState {
        let usable = self.active || (!self.failed && self.timing_slack() >= 0 && self.device.available());
        match self.mode {
            WatchdogMode::Off => WatchdogState::NotRequired,
            WatchdogMode::Automatic if usable => WatchdogState::Ready,
            WatchdogMode::Automatic => WatchdogState::NotRequired,
            WatchdogMode::Required if usable => WatchdogState::Ready,
            WatchdogMode::Required => WatchdogState::Unusable,
        }
    }

    /// `watchdog_failed` of the status JSON: required and not usable.
    pub fn failed(&self) -> bool {
        self.state() == WatchdogState::Unusable
    }

    /// Arm before leading. `Err` only when `required` and no safe watchdog could be set up;
    /// `automatic` logs and goes on without it (or with a longer timeout than asked).
    pub fn activate(&mut self) -> Result<(), String> {
        if self.mode == WatchdogMode::Off || self.active {
            return Ok(());
        }
        let required = self.mode == WatchdogMode::Required;
        let refuse = |msg: String| if required { Err(msg) } else { Ok(()) };
        let timeout = self.timeout();
        if self.failed {
            return refuse("Configuration requires watchdog, but watchdog could not be activated".into());
        }
        if self.timing_slack() < 0 {
            tracing::warn!(
                "Watchdog not supported because leader TTL {} is less than 2x loop_wait {}",
                self.timing.0,
                self.timing.1
            );
            self.failed = true;
            return refuse("Configuration requires watchdog, but watchdog could not be configured.".into());
        }
        let actual = match self.open_and_set(timeout) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("Could not activate {}: {e}", self.device.describe());
                self.close_device();
                self.failed = true;
                return refuse(
                    "Configuration requires watchdog, but watchdog could not be configured.".into(),
                );
            }
        };
        if actual < self.timing.1 as i64 {
            tracing::error!(
                "loop_wait of {} seconds is too long for watchdog {actual} second timeout",
                self.timing.1
            );
            tracing::info!("Disabling watchdog due to unsafe timeout.");
            self.close_device();
            self.failed = true;
            return refuse("Configuration requires watchdog, but watchdog could not be configured.".into());
        }
        if actual > timeout {
            if required {
                self.close_device();
                self.failed = true;
                return Err(format!(
                    "Configuration requires watchdog, but a safe watchdog timeout {timeout} could not be \
                     configured. Watchdog timeout is {actual}."
                ));
            }
            tracing::warn!(
                "Watchdog timeout {actual} seconds does not ensure safe termination within {timeout} seconds"
            );
        }
        if !self.can_be_disabled() {
            tracing::warn!(
                "Watchdog implementation can't be disabled. Watchdog will trigger after praetor loses leader key."
            );
        }
        self.active = true;
        self.applied_timeout = Some(self.timing.0);
        tracing::info!(
            "{} activated with {actual} second timeout, timing slack {} seconds",
            self.device.describe(),
            self.timing_slack()
        );
        Ok(())
    }

    /// Open the device, set `timeout` when the driver supports it, and read the timeout back.
    fn open_and_set(&mut self, timeout: i64) -> std::io::Result<i64> {
        self.device.open()?;
        if self.device.support()? & WDIOF_SETTIMEOUT != 0 {
            self.device.set_timeout(u32::try_from(timeout).unwrap_or(0))?;
        }
        Ok(i64::from(self.device.get_timeout()?))
    }

    fn can_be_disabled(&mut self) -> bool {
        self.device.support().is_ok_and(|s| s & WDIOF_MAGICCLOSE != 0)
    }

    fn close_device(&mut self) {
        if self.device.is_open()
            && let Err(e) = self.device.close()
        {
            tracing::error!("Error while disabling watchdog: {e}");
        }
    }

    /// Keep alive (after a successful lock renewal). A `ttl` changed since activation is applied
    /// now, so that the new timeout starts together with the renewed lease (Patroni).
    pub fn keepalive(&mut self) {
        if !self.active {
            return;
        }
        if let Err(e) = self.device.keepalive() {
            tracing::error!("Error while sending keepalive: {e}");
            return;
        }
        if self.applied_timeout != Some(self.timing.0) {
            self.applied_timeout = Some(self.timing.0);
            let t = u32::try_from(self.timeout()).unwrap_or(0);
            if let Err(e) = self.device.set_timeout(t) {
                tracing::error!("Error while sending keepalive: {e}");
            }
        }
    }

    /// Disarm (clean demotion, pause, shutdown).
    pub fn disable(&mut self) {
        if self.active {
            if self.device.is_open() && !self.can_be_disabled() {
                // Give the administrator the full timeout to clean up.
                let _ = self.device.keepalive();
                tracing::warn!(
                    "Watchdog implementation can't be disabled. System will reboot after {} seconds when watchdog times out.",
                    self.device.get_timeout().unwrap_or(0)
                );
            }
            self.close_device();
            self.active = false;
            self.applied_timeout = None;
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

    type Log = Arc<Mutex<Vec<String>>>;

    /// A device like a Linux driver: `min..=max` accepted by `set_timeout`, `round` added to what
    /// was asked (drivers with coarse steps), `fixed` for a driver without `WDIOF_SETTIMEOUT`.
    struct Fake {
        present: bool,
        open: bool,
        timeout: u32,
        min: u32,
        max: u32,
        round: u32,
        fixed: bool,
        magic_close: bool,
        log: Log,
    }

    impl Fake {
        fn new(log: &Log) -> Fake {
            Fake {
                present: true,
                open: false,
                timeout: 60,
                min: 1,
                max: 65535,
                round: 0,
                fixed: false,
                magic_close: true,
                log: log.clone(),
            }
        }
        fn push(&self, s: String) {
            self.log.lock().expect("lock").push(s);
        }
    }

    impl WatchdogDevice for Fake {
        fn open(&mut self) -> std::io::Result<()> {
            if !self.present {
                return Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no device"));
            }
            self.open = true;
            self.push("open".into());
            Ok(())
        }
        fn is_open(&self) -> bool {
            self.open
        }
        fn support(&mut self) -> std::io::Result<u32> {
            let mut s = 0;
            if !self.fixed {
                s |= WDIOF_SETTIMEOUT;
            }
            if self.magic_close {
                s |= WDIOF_MAGICCLOSE;
            }
            Ok(s)
        }
        fn set_timeout(&mut self, secs: u32) -> std::io::Result<()> {
            if secs < self.min || secs > self.max {
                return Err(std::io::Error::from_raw_os_error(22));
            }
            self.timeout = secs + self.round;
            self.push(format!("set_timeout {secs}"));
            Ok(())
        }
        fn get_timeout(&mut self) -> std::io::Result<u32> {
            Ok(self.timeout)
        }
        fn keepalive(&mut self) -> std::io::Result<()> {
            self.push("keepalive".into());
            Ok(())
        }
        fn close(&mut self) -> std::io::Result<()> {
            self.open = false;
            self.push("close V".into());
            Ok(())
        }
        fn available(&self) -> bool {
            self.present
        }
        fn describe(&self) -> String {
            "fake watchdog".into()
        }
    }

    fn wd_with(mode: WatchdogMode, margin: i64, f: impl FnOnce(&mut Fake)) -> (Watchdog, Log) {
        let log: Log = Arc::default();
        let mut dev = Fake::new(&log);
        f(&mut dev);
        let mut w = Watchdog::new(mode, margin, Box::new(dev));
        w.set_timing(Duration::from_secs(30), Duration::from_secs(10));
        (w, log)
    }

    fn wd(mode: WatchdogMode, present: bool) -> (Watchdog, Log) {
        wd_with(mode, 5, |d| d.present = present)
    }

    fn calls(log: &Log) -> Vec<String> {
        log.lock().expect("lock").clone()
    }

    #[test]
    fn timeout_is_ttl_minus_safety_margin() {
        let (mut w, log) = wd(WatchdogMode::Required, true);
        assert_eq!(w.timeout(), 25);
        assert_eq!(w.timing_slack(), 15);
        w.activate().expect("activate");
        assert!(w.is_active());
        assert_eq!(calls(&log), vec!["open", "set_timeout 25"]);
    }

    #[test]
    fn safety_margin_minus_one_means_half_the_ttl() {
        let (mut w, log) = wd_with(WatchdogMode::Automatic, -1, |_| {});
        assert_eq!(w.timeout(), 15);
        w.activate().expect("activate");
        assert_eq!(calls(&log), vec!["open", "set_timeout 15"]);
    }

    #[test]
    fn required_without_device_never_takes_the_lock() {
        let (mut w, _) = wd(WatchdogMode::Required, false);
        assert_eq!(w.state(), WatchdogState::Unusable);
        assert!(w.failed());
        assert!(w.activate().is_err());
        assert!(!w.is_active());
    }

    #[test]
    fn automatic_without_device_continues_without_it() {
        let (mut w, log) = wd(WatchdogMode::Automatic, false);
        assert_eq!(w.state(), WatchdogState::NotRequired);
        assert!(w.activate().is_ok());
        assert!(!w.is_active());
        w.keepalive();
        assert!(calls(&log).is_empty());
    }

    #[test]
    fn keepalive_after_renewal_and_magic_close_on_demotion() {
        let (mut w, log) = wd(WatchdogMode::Required, true);
        assert_eq!(w.state(), WatchdogState::Ready);
        w.activate().expect("activate");
        w.keepalive();
        w.disable();
        w.keepalive();
        assert!(!w.is_active());
        assert_eq!(calls(&log), vec!["open", "set_timeout 25", "keepalive", "close V"]);
    }

    #[test]
    fn off_never_touches_the_device() {
        let (mut w, log) = wd(WatchdogMode::Off, true);
        w.activate().expect("activate");
        w.keepalive();
        w.disable();
        assert_eq!(w.state(), WatchdogState::NotRequired);
        assert!(calls(&log).is_empty());
    }

    /// `ttl - safety_margin` below the driver's minimum: `WDIOC_SETTIMEOUT` fails, the device is
    /// disarmed again; `required` refuses to lead (and stays unusable), `automatic` leads without.
    #[test]
    fn timeout_below_device_minimum_required_refuses_automatic_continues() {
        let (mut w, log) = wd_with(WatchdogMode::Required, 5, |d| d.min = 60);
        assert!(w.activate().is_err());
        assert!(!w.is_active());
        assert_eq!(w.state(), WatchdogState::Unusable);
        assert_eq!(calls(&log), vec!["open", "close V"]);

        let (mut w, log) = wd_with(WatchdogMode::Automatic, 5, |d| d.min = 60);
        assert!(w.activate().is_ok());
        assert!(!w.is_active());
        assert_eq!(w.state(), WatchdogState::NotRequired);
        assert_eq!(calls(&log), vec!["open", "close V"]);
    }

    /// The driver rounds the timeout up beyond `ttl - safety_margin`: unsafe for `required`.
    #[test]
    fn timeout_read_back_longer_than_asked_required_refuses_automatic_warns() {
        let (mut w, log) = wd_with(WatchdogMode::Required, 5, |d| d.round = 5);
        assert!(w.activate().expect_err("refused").contains("safe watchdog timeout 25"));
        assert_eq!(calls(&log), vec!["open", "set_timeout 25", "close V"]);

        let (mut w, _) = wd_with(WatchdogMode::Automatic, 5, |d| d.round = 5);
        w.activate().expect("activate");
        assert!(w.is_active());
    }

    /// A driver without `WDIOF_SETTIMEOUT` whose fixed timeout is shorter than `loop_wait` would
    /// reset a healthy leader: disarmed.
    #[test]
    fn fixed_timeout_shorter_than_loop_wait_is_disarmed() {
        let (mut w, log) = wd_with(WatchdogMode::Required, 5, |d| {
            d.fixed = true;
            d.timeout = 5;
        });
        assert!(w.activate().is_err());
        assert_eq!(calls(&log), vec!["open", "close V"]);
    }

    /// No timing slack (`ttl - safety_margin < loop_wait`): no watchdog is safe.
    #[test]
    fn negative_timing_slack_means_no_watchdog() {
        let (mut w, log) = wd_with(WatchdogMode::Required, 25, |_| {});
        assert_eq!(w.timing_slack(), -5);
        assert_eq!(w.state(), WatchdogState::Unusable);
        assert!(w.activate().is_err());
        assert!(calls(&log).is_empty());
    }

    /// A failed activation is not retried every cycle, only after the configuration changed.
    #[test]
    fn failed_activation_is_retried_only_after_a_config_change() {
        let (mut w, log) = wd_with(WatchdogMode::Required, 5, |d| d.min = 60);
        assert!(w.activate().is_err());
        assert!(w.activate().is_err());
        assert_eq!(calls(&log).iter().filter(|c| *c == "open").count(), 1);
        w.set_timing(Duration::from_secs(70), Duration::from_secs(10));
        w.activate().expect("activate with ttl 70");
        assert!(calls(&log).contains(&"set_timeout 65".to_string()));
    }

    /// A `ttl` changed while armed is applied at the next keepalive (with the renewed lease).
    #[test]
    fn changed_ttl_applied_at_next_keepalive() {
        let (mut w, log) = wd(WatchdogMode::Automatic, true);
        w.activate().expect("activate");
        w.set_timing(Duration::from_secs(40), Duration::from_secs(10));
        w.keepalive();
        w.keepalive();
        assert_eq!(calls(&log), vec!["open", "set_timeout 25", "keepalive", "set_timeout 35", "keepalive"]);
    }

    /// A device that cannot be disarmed is kept alive once more on demotion (time to clean up).
    #[test]
    fn device_without_magic_close_gets_a_last_keepalive() {
        let (mut w, log) = wd_with(WatchdogMode::Automatic, 5, |d| d.magic_close = false);
        w.activate().expect("activate");
        w.disable();
        assert_eq!(calls(&log), vec!["open", "set_timeout 25", "keepalive", "close V"]);
    }

    /// The real device on a file that is not a watchdog: the ioctl fails with a clear error and
    /// `required` refuses to lead.
    #[test]
    fn linux_device_on_a_plain_file_fails_cleanly() {
        let f = tempfile::NamedTempFile::new().expect("tempfile");
        let mut dev = LinuxDevice::new(f.path().to_path_buf());
        assert!(dev.available());
        dev.open().expect("open");
        let e = dev.support().expect_err("not a watchdog");
        assert!(e.to_string().contains("Could not get information about watchdog device"), "{e}");
        assert!(dev.set_timeout(0).expect_err("range").to_string().contains("between 1 and 65535"));
        dev.close().expect("close");
        assert_eq!(std::fs::read(f.path()).expect("read"), b"V");

        let mut w =
            Watchdog::new(WatchdogMode::Required, 5, Box::new(LinuxDevice::new(f.path().to_path_buf())));
        assert!(w.activate().is_err());
        assert_eq!(w.state(), WatchdogState::Unusable);
        let missing = LinuxDevice::new(PathBuf::from("/nonexistent/watchdog"));
        assert!(!missing.available());
    }
}
