//! Fault injection from `BTOPT_FAULT_INJECT`, for tests and checks (grammar in the crate docs).

use crate::TaskId;
use crate::error::{Error, Kind};

/// The environment variable read by process workers.
pub const FAULT_ENV: &str = "BTOPT_FAULT_INJECT";

/// What an injected fault does to the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Abort,
    Exit(i32),
    Hang,
    SigKill,
    Panic,
    Garble,
    Stall,
}

#[derive(Clone, Debug, PartialEq)]
enum Select {
    Ids(Vec<TaskId>),
    Frac { frac: f64, seed: u64 },
}

#[derive(Clone, Debug, PartialEq)]
struct Rule {
    action: Action,
    select: Select,
    attempts: Option<u32>,
}

/// A parsed `BTOPT_FAULT_INJECT`; empty when the variable is unset.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FaultSpec {
    rules: Vec<Rule>,
}

impl FaultSpec {
    /// Reads and parses the environment variable; unset or empty means no faults.
    pub(crate) fn from_env() -> Result<FaultSpec, Error> {
        match std::env::var(FAULT_ENV) {
            Ok(s) => FaultSpec::parse(&s).map_err(|m| Error::new(Kind::FaultSpec(m))),
            Err(_) => Ok(FaultSpec::default()),
        }
    }

    pub(crate) fn parse(s: &str) -> Result<FaultSpec, String> {
        let mut rules = Vec::new();
        for rule in s.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            rules.push(parse_rule(rule).map_err(|m| format!("{m} in rule {rule:?}"))?);
        }
        Ok(FaultSpec { rules })
    }

    /// The fault to inject for this attempt of this task, if any. First matching rule wins.
    pub(crate) fn decide(&self, task: TaskId, attempt: u32) -> Option<Action> {
        self.rules.iter().find_map(|r| {
            if r.attempts.is_some_and(|n| attempt >= n) {
                return None;
            }
            let hit = match &r.select {
                Select::Ids(ids) => ids.contains(&task),
                Select::Frac { frac, seed } => unit_hash(task, *seed) < *frac,
            };
            hit.then_some(r.action)
        })
    }
}

fn parse_rule(rule: &str) -> Result<Rule, String> {
    let (action, rest) = rule.split_once('@').ok_or("expected ACTION@SELECTOR")?;
    let mut parts = rest.split(',').map(str::trim);
    let select = parts.next().unwrap_or_default();
    let (mut seed, mut attempts, mut code) = (0u64, None, 70i32);
    for opt in parts {
        let (k, v) = opt.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {opt:?}"))?;
        match k {
            "seed" => seed = v.parse().map_err(|_| format!("bad seed {v:?}"))?,
            "attempts" => attempts = Some(v.parse().map_err(|_| format!("bad attempts {v:?}"))?),
            "code" => code = v.parse().map_err(|_| format!("bad code {v:?}"))?,
            _ => return Err(format!("unknown option {k:?}")),
        }
    }
    let action = match action.trim() {
        "abort" => Action::Abort,
        "exit" => Action::Exit(code),
        "hang" => Action::Hang,
        "sigkill" => Action::SigKill,
        "panic" => Action::Panic,
        "garble" => Action::Garble,
        "stall" => Action::Stall,
        a => return Err(format!("unknown action {a:?}")),
    };
    let select = match select.split_once('=') {
        Some(("ids", v)) => Select::Ids(
            v.split('+')
                .map(|x| x.trim().parse().map_err(|_| format!("bad task id {x:?}")))
                .collect::<Result<_, _>>()?,
        ),
        Some(("frac", v)) => {
            let frac: f64 = v.parse().map_err(|_| format!("bad fraction {v:?}"))?;
            if !(0.0..=1.0).contains(&frac) {
                return Err(format!("fraction {frac} outside 0..=1"));
            }
            Select::Frac { frac, seed }
        }
        _ => return Err(format!("expected ids=A+B+... or frac=F, got {select:?}")),
    };
    Ok(Rule { action, select, attempts })
}

/// A reproducible number in [0, 1) from the task id and seed (splitmix64).
fn unit_hash(task: TaskId, seed: u64) -> f64 {
    let mut z = task ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Performs the fault inside a worker process. `Panic` is left to the caller; `Garble`
/// writes a truncated frame to `out` and exits.
pub(crate) fn perform(action: Action, out: &mut (impl std::io::Write + ?Sized)) {
    match action {
        Action::Garble => {
            // Claims 1000 bytes, sends 3, then the worker is gone.
            let _ = out.write_all(&[0xE8, 0x03, 0, 0, b'b', b'a', b'd']);
            let _ = out.flush();
            perform(Action::Exit(71), out)
        }
        Action::Stall => {
            // Claims 1000 bytes, sends 3, then stays alive and silent: half a frame must not
            // stall the pool (the task timeout catches it).
            let _ = out.write_all(&[0xE8, 0x03, 0, 0, b'b', b'a', b'd']);
            let _ = out.flush();
            perform(Action::Hang, out)
        }
        Action::Abort => std::process::abort(),
        Action::Exit(code) => {
            #[cfg(unix)]
            // SAFETY: _exit is async-signal-safe and ends the process without running
            // destructors, as forked workers always do.
            unsafe {
                libc::_exit(code)
            }
            #[cfg(not(unix))]
            std::process::exit(code)
        }
        Action::Hang => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Action::SigKill => {
            #[cfg(unix)]
            // SAFETY: raising a signal at ourselves has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
            std::process::abort()
        }
        Action::Panic => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let f = FaultSpec::parse("abort@ids=3+7; hang@frac=0.5,seed=9,attempts=1;exit@ids=1,code=3").unwrap();
        assert_eq!(f.decide(3, 0), Some(Action::Abort));
        assert_eq!(f.decide(7, 5), Some(Action::Abort));
        assert_eq!(f.decide(1, 1), Some(Action::Exit(3)));
        assert_eq!(f.decide(2, 1), None);
        assert!(FaultSpec::parse("").unwrap().rules.is_empty());
        for bad in ["abort", "boom@ids=1", "abort@frac=2", "abort@ids=x", "abort@ids=1,nope=2"] {
            assert!(FaultSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fraction_is_deterministic_and_roughly_right() {
        let f = FaultSpec::parse("abort@frac=0.25,seed=1").unwrap();
        let hits: Vec<_> = (0..4000).filter(|&t| f.decide(t, 0).is_some()).collect();
        let again: Vec<_> = (0..4000).filter(|&t| f.decide(t, 0).is_some()).collect();
        assert_eq!(hits, again);
        assert!((800..1200).contains(&hits.len()), "{}", hits.len());
        let other = FaultSpec::parse("abort@frac=0.25,seed=2").unwrap();
        assert!((0..4000).any(|t| other.decide(t, 0).is_some() != f.decide(t, 0).is_some()));
    }

    #[test]
    fn attempts_limit() {
        let f = FaultSpec::parse("sigkill@ids=4,attempts=1").unwrap();
        assert_eq!(f.decide(4, 0), Some(Action::SigKill));
        assert_eq!(f.decide(4, 1), None);
    }
}
