//! func_db: the astdb from the dialplan — `DB(family/key)` (read and write), `DB_EXISTS`,
//! `DB_DELETE` — as Asterisk's func_db.

use starling_core::apps::Function;
use starling_core::channel::Channel;
use starling_core::{LoadError, Module, ModuleContext};

/// `family/key` (the key may contain further slashes).
fn split(args: &str) -> Result<(&str, &str), String> {
    let args = args.trim();
    let (family, key) = args.split_once('/').ok_or_else(|| format!("'{args}' is not family/key"))?;
    if family.is_empty() || key.is_empty() {
        return Err(format!("'{args}' is not family/key"));
    }
    Ok((family, key))
}

fn db_read(chan: &mut Channel, args: &str) -> Result<String, String> {
    let (family, key) = split(args)?;
    let value = chan.core().db().get(family, key).map_err(|e| e.to_string())?;
    // Asterisk sets DB_RESULT on reads too; an absent key reads as empty.
    let value = value.unwrap_or_default();
    chan.set_var("DB_RESULT", &value);
    Ok(value)
}

fn db_write(chan: &mut Channel, args: &str, value: &str) -> Result<(), String> {
    let (family, key) = split(args)?;
    chan.core().db().put(family, key, value).map_err(|e| e.to_string())
}

fn db_exists(chan: &mut Channel, args: &str) -> Result<String, String> {
    let (family, key) = split(args)?;
    let value = chan.core().db().get(family, key).map_err(|e| e.to_string())?;
    chan.set_var("DB_RESULT", value.as_deref().unwrap_or(""));
    Ok(if value.is_some() { "1" } else { "0" }.into())
}

fn db_delete(chan: &mut Channel, args: &str) -> Result<String, String> {
    let (family, key) = split(args)?;
    let db = chan.core().db();
    let value = db.get(family, key).map_err(|e| e.to_string())?.unwrap_or_default();
    db.del(family, key).map_err(|e| e.to_string())?;
    Ok(value)
}

fn load(ctx: &ModuleContext) -> Result<Box<dyn Module>, LoadError> {
    let functions = vec![
        Function {
            name: "DB",
            synopsis: "Read from or write to the Starling database.",
            syntax: "DB(family/key)",
            read: Some(db_read),
            write: Some(db_write),
            escalation: starling_core::apps::Escalation::Both,
            uses: None,
        },
        Function {
            name: "DB_EXISTS",
            synopsis: "Check to see if a key exists in the Starling database.",
            syntax: "DB_EXISTS(family/key)",
            read: Some(db_exists),
            write: None,
            escalation: starling_core::apps::Escalation::None,
            uses: None,
        },
        Function {
            name: "DB_DELETE",
            synopsis: "Return a value from the database and delete it.",
            syntax: "DB_DELETE(family/key)",
            read: Some(db_delete),
            write: None,
            escalation: starling_core::apps::Escalation::Read,
            uses: None,
        },
    ];
    Ok(Box::new(ctx.register_functions(functions)?))
}

starling_core::module! {
    description: "Database (astdb) related dialplan functions",
    support_level: Core,
    load: load,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_exists_delete() {
        let core = starling_core::Core::for_tests();
        core.set_db(std::sync::Arc::new(starling_core::db::SqliteStorage::in_memory()));
        let (mut chan, _driver) = Channel::new(&core, "Test", "x", false);
        db_write(&mut chan, "test/count", "5").unwrap();
        assert_eq!(db_read(&mut chan, "test/count").unwrap(), "5");
        assert_eq!(db_exists(&mut chan, "test/count").unwrap(), "1");
        assert_eq!(db_delete(&mut chan, "test/count").unwrap(), "5");
        assert_eq!(db_exists(&mut chan, "test/count").unwrap(), "0");
        assert!(db_read(&mut chan, "nofamily").is_err());
    }
}
