//! func_logic: `IF`, `ISNULL`, `EXISTS`, `SET` — Asterisk's func_logic — and `RAND` (func_rand).

use starling_core::apps::{separate_args, Function};
use starling_core::builtins::is_true;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

/// `IF(expression?[true][:false])`, split as func_logic does (AST_NONSTANDARD_APP_ARGS at `?`,
/// then at `:`): outside parentheses, brackets and quotes, `\` escaping.
fn if_(_: &mut Channel, args: &str) -> Result<String, String> {
    const SYNTAX: &str = "IF(expression?[true][:false])";
    let [condition, branches] = separate_args(args, '?', true, 2).try_into().map_err(|_| SYNTAX)?;
    let mut branches = separate_args(&branches, ':', true, 2).into_iter();
    let (yes, no) = (branches.next().unwrap_or_default(), branches.next().unwrap_or_default());
    Ok(if is_true(condition.trim()) { yes } else { no }.trim().to_owned())
}

fn isnull(_: &mut Channel, args: &str) -> Result<String, String> {
    Ok(if args.is_empty() { "1" } else { "0" }.into())
}

fn exists(_: &mut Channel, args: &str) -> Result<String, String> {
    Ok(if args.is_empty() { "0" } else { "1" }.into())
}

/// `SET(var=value)`: sets and returns the value.
fn set(chan: &mut Channel, args: &str) -> Result<String, String> {
    let (name, value) = args.split_once('=').ok_or("SET(varname=value)")?;
    chan.set_var(name.trim(), value);
    Ok(value.to_owned())
}

/// `RAND([min][,max])`: a random integer, 0..=2147483647 by default. Not for secrets.
fn rand(_: &mut Channel, args: &str) -> Result<String, String> {
    let ([min, max], _) = starling_core::apps::app_args::<2>(args);
    let min: i64 = min.trim().parse().unwrap_or(0);
    let max: i64 = max.trim().parse().unwrap_or(i64::from(i32::MAX));
    let (low, high) = if min <= max { (min, max) } else { (max, min) };
    // A splitmix64 step over the clock and a counter: enough spread for a dialplan's RAND.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ COUNTER.fetch_add(0x9e37_79b9_7f4a_7c15, std::sync::atomic::Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let span = (high - low) as u64 + 1;
    Ok((low + (z % span) as i64).to_string())
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let f = Function::read_only;
    let functions = [
        f("IF", "Check for an expression.", "IF(expression?[true][:false])", if_),
        f("ISNULL", "Check if a value is NULL.", "ISNULL(data)", isnull),
        f("EXISTS", "Test the existence of a value.", "EXISTS(data)", exists),
        f("SET", "SET assigns a value to a channel variable.", "SET(varname=[value])", set),
        f("RAND", "Choose a random number in a range.", "RAND([min][,max])", rand),
    ];
    Ok(Box::new(ctx.register_functions(functions.into())?))
}

starling_core::module! {
    description: "Logical dialplan functions",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logic_functions() {
        let core = starling_core::Core::for_tests();
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        assert_eq!(if_(&mut chan, "1?yes:no").unwrap(), "yes");
        assert_eq!(if_(&mut chan, "0?yes:no").unwrap(), "no");
        assert_eq!(if_(&mut chan, "0?yes").unwrap(), "");
        assert_eq!(if_(&mut chan, "1?a\\:b:c").unwrap(), "a:b", "an escaped colon");
        assert_eq!(if_(&mut chan, "0?$[a:b]:c").unwrap(), "c", "a colon inside brackets");
        assert!(if_(&mut chan, "1").is_err());
        assert_eq!(isnull(&mut chan, "").unwrap(), "1");
        assert_eq!(exists(&mut chan, "x").unwrap(), "1");
        assert_eq!(set(&mut chan, "A=5").unwrap(), "5");
        assert_eq!(chan.var("A"), Some("5"));
        for _ in 0..100 {
            let r: i64 = rand(&mut chan, "1,6").unwrap().parse().unwrap();
            assert!((1..=6).contains(&r));
        }
    }
}
