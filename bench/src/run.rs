//! One run: find the programs and the `ferry` binary, make the PKI, then for
//! each link start the application and measure every path in turn, and
//! write `results.md` and the charts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::app::App;
use crate::opts::{Opts, Plan, Scope};
use crate::paths::PathKind;
use crate::peers::{Ctx, RunningPath};
use crate::pki::{FerryPki, PairPki};
use crate::prereq::Programs;
use crate::progress::Progress;
use crate::report;
use crate::results::Results;
use crate::scenarios::{self, Env};
use crate::topology::Topology;
use crate::{fd_limit, interrupt, loadgen, netns};

/// A scenario that starts its own path.
type FreshScenario = fn(&Env, PathKind, &Ctx, &mut Results);

/// The `--scenarios` keys.
const SCENARIOS: [&str; 8] = [
    "bulk",
    "idle-cpu",
    "latency",
    "max-rate",
    "new-conn",
    "handshake",
    "open-conns",
    "peer-edges",
];

/// Shared by every link.
pub struct Setup {
    pub opts: Opts,
    pub plan: Plan,
    pub ferry: PathBuf,
    pub programs: Programs,
    pub pair_pki: PairPki,
    pub ferry_pki: FerryPki,
    pub work: tempfile::TempDir,
    pub paths: Vec<PathKind>,
    pub progress: Progress,
}

fn locate_ferry(opts: &Opts, progress: &Progress) -> Result<PathBuf> {
    if let Some(p) = &opts.ferry {
        return Ok(p.clone());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let (false, Ok(cargo)) = (opts.no_build, std::env::var("CARGO")) {
        progress.step("building target/release/ferry (cargo build --release -p ferry --bin ferry)");
        let st = Command::new(&cargo)
            .args([
                "build",
                "--release",
                "-p",
                "ferry",
                "--bin",
                "ferry",
                "--manifest-path",
            ])
            .arg(workspace.join("Cargo.toml"))
            .status()
            .with_context(|| format!("run {cargo} build"))?;
        if !st.success() {
            bail!("`cargo build --release -p ferry --bin ferry` failed ({st})");
        }
    }
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"));
    let ferry = target.join("release").join("ferry");
    if !ferry.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p ferry --bin ferry` (or pass --ferry PATH)",
            ferry.display()
        );
    }
    Ok(ferry)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn load_average() -> (String, f64) {
    let up = sh("uptime", &[]);
    let l1 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    (up, l1)
}

fn context(setup: &Setup) -> Vec<String> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let commit = sh(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    );
    let mut v = vec![
        format!(
            "Mode: {}; date (UTC): {}",
            if setup.opts.quick { "--quick" } else { "full" },
            sh("date", &["-u", "+%Y-%m-%d %H:%M"])
        ),
        format!(
            "Machine: {} vCPUs ({cpu}), Linux {}, {}",
            sh("nproc", &[]),
            sh("uname", &["-r"]),
            sh(
                "sh",
                &["-c", "free -g | awk '/Mem:/ {print $2 \" GiB RAM\"}'"]
            )
        ),
        format!("Ferry: {} at commit {commit}", setup.ferry.display()),
    ];
    let versions = setup.programs.versions();
    if !versions.is_empty() {
        v.push(format!("Peers: {}", versions.join("; ")));
    }
    v
}

pub fn run(opts: Opts) -> Result<()> {
    interrupt::install();
    netns::remove_stale();
    let progress = Progress::default();
    let plan = Plan::from_opts(&opts);
    for s in opts.scenarios.iter().flatten() {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!(
                "unknown scenario {s:?} in --scenarios ({})",
                SCENARIOS.join(", ")
            );
        }
    }
    let ferry = locate_ferry(&opts, &progress)?;
    match fd_limit::raise() {
        Ok(n) if (n as usize) < 4 * plan.open_conns => progress.step(&format!(
            "open-file limit {n}: holding {} connections may fail",
            plan.open_conns
        )),
        Ok(_) => {}
        Err(e) => progress.step(&format!("could not raise the open-file limit: {e}")),
    }
    let programs = Programs::find();
    if let Some(h) = programs.install_hint() {
        eprintln!("bench: some peer programs are missing; their rows will say so. Install them with:\n    {h}");
    }
    let mut paths = Vec::new();
    for p in &opts.paths {
        paths
            .push(PathKind::from_key(p).with_context(|| format!("unknown path {p:?} in --paths"))?);
    }
    ferry_transport::install_crypto_provider();
    let mut work = tempfile::Builder::new().prefix("ferry-bench-").tempdir()?;
    if std::env::var_os("BENCH_KEEP_WORK").is_some() {
        // Edge logs and configs, for debugging a run.
        work.disable_cleanup(true);
        eprintln!(
            "bench: keeping the work directory {}",
            work.path().display()
        );
    }
    let pair_pki = PairPki::generate(&work.path().join("pair-pki"))?;
    let ferry_pki = FerryPki::generate(&ferry, &work.path().join("ferry-pki"))?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let setup = Setup {
        opts: opts.clone(),
        plan,
        ferry,
        programs,
        pair_pki,
        ferry_pki,
        work,
        paths,
        progress,
    };
    let mut results = Results {
        context: context(&setup),
        ..Results::default()
    };
    let (up0, _) = load_average();
    for link in &opts.links {
        interrupt::check()?;
        let r = match link.as_str() {
            "loopback" => Topology::loopback().and_then(|t| measure_link(&setup, &t, &mut results)),
            "veth1500" | "veth9000" => {
                let mtu = if link == "veth1500" { 1500 } else { 9000 };
                match setup.programs.missing_for_netns() {
                    Some(why) => {
                        results.problems.push(format!("{link} skipped: {why}"));
                        Ok(())
                    }
                    None => Topology::veth(&mtu.to_string(), mtu)
                        .and_then(|t| measure_link(&setup, &t, &mut results)),
                }
            }
            "netem" => scenarios::lossy::run_all(&setup, &mut results),
            other => {
                bail!("unknown link {other:?} in --links (loopback, veth1500, veth9000, netem)")
            }
        };
        if let Err(e) = r {
            if interrupt::interrupted() {
                return Err(e);
            }
            results.problems.push(format!("{link}: {e:#}"));
            eprintln!("bench: {link}: {e:#}");
        }
    }
    let (up1, l1) = load_average();
    results
        .context
        .push(format!("Load before: `{up0}`; after: `{up1}`"));
    if l1 > 0.5 {
        results.context.push(format!(
            "**Measured on a busy machine** (1-minute load {l1:.2} at the end, on {} vCPUs): absolute figures are low and noisy; compare ratios within the run.",
            sh("nproc", &[])
        ));
    }
    if interrupt::interrupted() {
        results
            .problems
            .push("interrupted by a signal: the results are incomplete".into());
    }
    write_outputs(&setup, &results)?;
    interrupt::check()
}

fn write_outputs(setup: &Setup, results: &Results) -> Result<()> {
    let out = &setup.opts.out;
    let mut md = report::markdown::render(results);
    let mut charts = report::svg::latency_charts(results, out)?;
    charts.extend(report::svg::throughput_charts(results, out)?);
    if !charts.is_empty() {
        md += "#### Charts\n\n";
        for c in &charts {
            let name = c.file_name().unwrap_or_default().to_string_lossy();
            md += &format!("- `{name}`\n");
        }
    }
    let file = out.join("results.md");
    std::fs::write(&file, &md).with_context(|| format!("write {}", file.display()))?;
    println!("{md}");
    setup.progress.step(&format!(
        "done: {} and {} chart(s) in {}",
        file.display(),
        charts.len(),
        out.display()
    ));
    Ok(())
}

/// The `--scenarios` key of a table, from its title ("other" for the
/// tables no key selects on its own, such as memory).
fn scenario_key(title: &str) -> &'static str {
    if title.starts_with("Bulk") {
        "bulk"
    } else if title.starts_with("Small HTTP requests, maximum rate") {
        "max-rate"
    } else if title.starts_with("Small HTTP") {
        "latency"
    } else if title.starts_with("New application") {
        "new-conn"
    } else {
        "other"
    }
}

/// Measures every path on one link.
pub fn measure_link(setup: &Setup, topo: &Topology, results: &mut Results) -> Result<()> {
    setup
        .progress
        .step(&format!("{}: starting the application", topo.name));
    let app = App::start(&topo.server)?;
    let env = Env {
        topo,
        app: &app,
        plan: &setup.plan,
        progress: &setup.progress,
    };
    let mut unavailable: Vec<(PathKind, String)> = Vec::new();
    for (i, &kind) in setup.paths.iter().enumerate() {
        interrupt::check()?;
        // The opaque-HTTP paths add rows to the HTTP request scenarios
        // only, and only where every scenario runs (every link in a full
        // run, loopback with `--quick`, which must stay within 2 minutes).
        if kind.is_opaque_http() && setup.plan.scope(topo.mtu) != Scope::All {
            continue;
        }
        if let Some(why) = setup.programs.missing_for(kind) {
            setup
                .progress
                .step(&format!("{} · {}: skipped, {why}", topo.name, kind.label()));
            unavailable.push((kind, why));
            continue;
        }
        let ctx = Ctx {
            topo,
            app: &app,
            pair_pki: &setup.pair_pki,
            ferry_pki: &setup.ferry_pki,
            ferry: &setup.ferry,
            programs: &setup.programs,
            dir: setup
                .work
                .path()
                .join(format!("{}-{i}-{}", topo.mtu, kind.key())),
        };
        setup
            .progress
            .step(&format!("{} · {}: starting", topo.name, kind.label()));
        let mut path = match RunningPath::start(kind, &ctx) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("bench: {e:#}");
                unavailable.push((kind, format!("failed to start: {e:#}")));
                continue;
            }
        };
        if let Err(e) = measure_path(setup, &env, &mut path, results) {
            eprintln!("bench: {} on {}: {e:#}", kind.label(), topo.name);
            unavailable.push((kind, format!("{e:#}")));
        }
        drop(path);
        // Scenarios that start their own, fresh path (in a subdirectory).
        let fresh: [(&str, FreshScenario); 3] = [
            ("handshake", scenarios::handshake::run),
            ("open-conns", scenarios::open_conns::run),
            ("peer-edges", scenarios::peer_edges::run),
        ];
        for (key, run) in fresh {
            if kind.measures(key)
                && setup.plan.scope(topo.mtu) == Scope::All
                && setup.opts.wants(key)
            {
                let ctx = Ctx {
                    dir: ctx.dir.join(key),
                    ..ctx
                };
                run(&env, kind, &ctx, results);
            }
        }
    }
    for (kind, why) in unavailable {
        for t in results.tables.iter_mut().filter(|t| t.link == topo.name) {
            if kind.measures(scenario_key(&t.scenario)) && !t.rows.contains_key(&kind) {
                t.note(kind, why.clone());
            }
        }
    }
    Ok(())
}

fn measure_path(
    setup: &Setup,
    env: &Env,
    path: &mut RunningPath,
    results: &mut Results,
) -> Result<()> {
    let wants = |s| setup.opts.wants(s);
    if let Some(http) = path.http {
        env.topo
            .client
            .run_timeout("warm-up request", Duration::from_secs(20), async move {
                loadgen::new_conn::one(http).await.map(|_| ())
            })?;
    }
    std::thread::sleep(Duration::from_millis(300));
    let idle = (path.client_rss_kib(), path.server_rss_kib());
    let scope = env.plan.scope(env.topo.mtu);
    if path.kind.has_proxies() && scope == Scope::All && wants("idle-cpu") {
        scenarios::idle_cpu::run(env, path, env.plan.idle_cpu_window, results);
    }
    for flows in [1, 8] {
        if wants("bulk") && path.kind.measures("bulk") {
            scenarios::bulk::run(env, path, flows, results);
            path.check_alive()?;
        }
    }
    if !path.kind.measures("latency") || scope == Scope::Bulk {
        return Ok(());
    }
    for &rate in env.plan.rates.iter().filter(|_| wants("latency")) {
        scenarios::latency::run(env, path, rate, results);
        path.check_alive()?;
    }
    if scope == Scope::BulkLatency {
        return Ok(());
    }
    let load = if wants("max-rate") {
        let load = scenarios::max_rate::run(env, path, results);
        path.check_alive()?;
        load
    } else {
        Default::default()
    };
    if wants("new-conn") {
        scenarios::new_conn::run(env, path, results);
        path.check_alive()?;
    }
    if path.kind.has_proxies() {
        scenarios::memory::record(env, results, path.kind, idle, load);
    }
    Ok(())
}
