//! A real OpenStack Keystone (identity v3) on `127.0.0.1` for tests, started from a
//! virtualenv holding `keystone==30.0.0` and `gunicorn` (`.ci/run` makes one and exports its
//! path as [`VENV_ENV`]).
//!
//! [`Keystone::start`] writes a configuration into a temporary directory (SQLite database,
//! fernet tokens), runs `keystone-manage db_sync`, `fernet_setup`, `credential_setup` and
//! `bootstrap` (user `admin` with [`ADMIN_PASSWORD`] in project `admin`, domain `Default`,
//! region `RegionOne`, identity endpoints at its own URL), serves
//! `keystone.wsgi.api:application` with gunicorn on a free port (through a two-line shim:
//! Keystone parses the process's arguments, which are gunicorn's) and waits until `/v3`
//! answers. Dropping it stops gunicorn.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::glance::{free_port, gunicorn, stop, tail, wait_answer};

/// The environment variable naming the Keystone virtualenv.
pub const VENV_ENV: &str = "VMC_TEST_KEYSTONE_VENV";

/// The bootstrap admin's password.
pub const ADMIN_PASSWORD: &str = "vmc-test-admin-secret";

/// The virtualenv of [`VENV_ENV`], or `None` (saying that `test` is skipped); under CI an
/// unset variable panics.
pub fn venv_from_env(test: &str) -> Option<PathBuf> {
    crate::glance::venv_from(VENV_ENV, "Keystone", test)
}

/// A running Keystone; stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Keystone {
    child: Child,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Keystone {
    /// Configures, bootstraps and starts Keystone from the virtualenv `venv`.
    pub fn start(venv: &Path) -> io::Result<Keystone> {
        let dir = tempfile::Builder::new().prefix("vmc-keystone-").tempdir()?;
        let root = dir.path();
        for sub in ["etc/fernet", "etc/credential"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let r = root.display();
        std::fs::write(
            root.join("etc/keystone.conf"),
            format!(
                "[database]\nconnection = sqlite:///{r}/keystone.db\n\
                 [token]\nprovider = fernet\n\
                 [fernet_tokens]\nkey_repository = {r}/etc/fernet\n\
                 [fernet_receipts]\nkey_repository = {r}/etc/fernet\n\
                 [credential]\nkey_repository = {r}/etc/credential\n"
            ),
        )?;
        std::fs::write(
            root.join("vmc_keystone_shim.py"),
            "import sys\nsys.argv = sys.argv[:1]\nfrom keystone.wsgi.api import application  # noqa\n",
        )?;
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let url = format!("http://{addr}/v3");
        let conf = root.join("etc/keystone.conf");
        let manage = |args: &[&str]| -> io::Result<()> {
            let out = Command::new(venv.join("bin/keystone-manage"))
                .arg("--config-file")
                .arg(&conf)
                .args(args)
                .current_dir(root)
                .stdin(Stdio::null())
                .output()?;
            if out.status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "keystone-manage {args:?} failed ({}): {}",
                    out.status,
                    tail(&String::from_utf8_lossy(&out.stderr))
                )))
            }
        };
        manage(&["db_sync"])?;
        for keys in ["fernet_setup", "credential_setup"] {
            manage(&[keys, "--keystone-user", "root", "--keystone-group", "root"])?;
        }
        manage(&[
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            &url,
            "--bootstrap-public-url",
            &url,
            "--bootstrap-internal-url",
            &url,
            "--bootstrap-region-id",
            "RegionOne",
        ])?;
        let mut child = gunicorn(
            venv,
            root,
            addr,
            "vmc_keystone_shim:application",
            ("OS_KEYSTONE_CONFIG_DIR", root.join("etc")),
        )?;
        if let Err(e) = wait_answer(&mut child, addr, "/v3", root) {
            stop(&mut child);
            return Err(e);
        }
        Ok(Keystone {
            child,
            _dir: dir,
            addr,
        })
    }

    /// The identity endpoint, `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
