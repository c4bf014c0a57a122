//! Dialplan hot paths. Targets (issue 6): match an extension in a 10,000-extension dialplan
//! with 500 patterns ≥ 1,000,000 matches/s; `$[${X} + 1 = 5 & ${LEN(${Y})} > 3]` ≥ 500,000/s.

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use starling_core::config::Config;
use starling_dialplan::expr;
use starling_dialplan::extensions::Dialplan;
use starling_dialplan::pattern::Mode;
use starling_dialplan::substitute::{substitute, Scope};
use starling_dialplan::timing::TimeOfDay;

fn big_dialplan() -> Dialplan {
    let mut text = String::from("[default]\n");
    for i in 0..9500 {
        text.push_str(&format!("exten => {},1,NoOp()\n", 100_000 + i * 7));
    }
    for i in 0..500 {
        // Varied patterns: fixed prefixes of different lengths, classes, sets, and catch-alls.
        let p = match i % 5 {
            0 => format!("_{:03}XXXX", i),
            1 => format!("_9{:03}NXX.", i),
            2 => format!("_[2-4]{:03}XXX", i),
            3 => format!("_1{:03}ZXXXXX", i),
            _ => format!("_8{:03}!", i),
        };
        text.push_str(&format!("exten => {p},1,NoOp()\n"));
    }
    Dialplan::from_config(&Config::parse_str("extensions.conf", &text).unwrap()).unwrap()
}

fn matching(c: &mut Criterion) {
    let plan = big_dialplan();
    let now = TimeOfDay { weekday: 1, mday: 1, month: 1, hour: 12, minute: 0 };
    // Half exact hits, the rest pattern hits and a few misses.
    let probes: Vec<String> = (0..1000)
        .map(|i| match i % 10 {
            0..=4 => (100_000 + (i * 37 % 9500) * 7).to_string(),
            5 => format!("{:03}1234", (i * 5) % 500 / 5 * 5),
            6 => format!("9{:03}5551", 1 + (i * 5) % 500 / 5 * 5),
            7 => format!("3{:03}123", 2 + (i * 5) % 500 / 5 * 5),
            8 => format!("8{:03}77", 4 + (i * 5) % 500 / 5 * 5),
            _ => "55555555555".to_string(),
        })
        .collect();
    let found = probes.iter().filter(|p| plan.find("default", p, None, Mode::Match, &now).is_some()).count();
    println!(
        "dialplan of {} extensions; {found} of {} probes match",
        plan.context("default").unwrap().extensions.len(),
        probes.len()
    );
    let mut group = c.benchmark_group("dialplan");
    group.throughput(Throughput::Elements(probes.len() as u64));
    group.bench_function("match_in_10k_with_500_patterns", |b| {
        b.iter(|| {
            probes
                .iter()
                .filter(|p| plan.find("default", std::hint::black_box(p), None, Mode::Match, &now).is_some())
                .count()
        })
    });
    group.finish();
}

struct Vars(HashMap<&'static str, &'static str>);

impl Scope for Vars {
    fn variable(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| v.to_string())
    }
    fn function(&mut self, name: &str, args: &str) -> Result<String, String> {
        match name {
            "LEN" => Ok(args.chars().count().to_string()),
            _ => Err(name.to_owned()),
        }
    }
}

fn expressions(c: &mut Criterion) {
    let mut vars = Vars([("X", "3"), ("Y", "abcd")].into_iter().collect());
    let mut group = c.benchmark_group("dialplan_expression");
    group.throughput(Throughput::Elements(1));
    group.bench_function("substitute_and_evaluate", |b| {
        b.iter(|| substitute(std::hint::black_box("$[${X} + 1 = 5 & ${LEN(${Y})} > 3]"), &mut vars))
    });
    group.bench_function("evaluate_only", |b| {
        b.iter(|| expr::evaluate(std::hint::black_box("3 + 1 = 5 & 4 > 3")).unwrap())
    });
    group.finish();
}

/// What a stranger can send (issue 20): 20,000 `(` then `1` from a caller ID, in `$[...]`, and
/// the same depth of `${LEN(...)}` around it. Both stop at their depth limit; the figure to
/// watch is the time per byte, which must stay flat (linear) as the nesting grows.
fn hostile(c: &mut Criterion) {
    let mut vars = Vars([("X", "3"), ("Y", "abcd")].into_iter().collect());
    let mut group = c.benchmark_group("dialplan_hostile");
    for depth in [2_000usize, 20_000] {
        let parens = format!("{}1 = 1", "(".repeat(depth));
        group.throughput(Throughput::Bytes(parens.len() as u64));
        group.bench_function(format!("evaluate_{depth}_parentheses"), |b| {
            b.iter(|| expr::evaluate(std::hint::black_box(&parens)).unwrap_err())
        });
        let functions = format!("{}${{Y}}{}", "${LEN(".repeat(depth), ")}".repeat(depth));
        group.throughput(Throughput::Bytes(functions.len() as u64));
        group.bench_function(format!("substitute_{depth}_nested_functions"), |b| {
            b.iter(|| substitute(std::hint::black_box(&functions), &mut vars))
        });
    }
    group.finish();
}

criterion_group!(benches, matching, expressions, hostile);
criterion_main!(benches);
