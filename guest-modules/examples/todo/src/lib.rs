//! A to-do list in SQL: its own `api` export for `warden run --invoke`, the
//! `task` export printing the list, and an HTTP handler for `warden serve`.
//! Works on SQLite and PostgreSQL.

mod http;

use warden_sdk::sql::{Connection, Transaction, Value};
use warden_sdk::{Error, Task};

wit_bindgen::generate!({
    inline: r#"
        package warden-examples:todo;

        interface api {
            record item { id: s64, title: string, done: bool }
            add: func(title: string) -> result<s64, string>;
            %list: func() -> result<list<item>, string>;
            complete: func(id: s64) -> result<bool, string>;
            remove: func(id: s64) -> result<bool, string>;
        }

        world todo { export api; }
    "#,
});

use exports::warden_examples::todo::api::{Guest, Item};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS todos (id BIGINT PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN NOT NULL)";

struct Todo;

fn db() -> Result<Connection, String> {
    let db = Connection::open("main").map_err(describe)?;
    db.execute(SCHEMA, &[]).map_err(describe)?;
    Ok(db)
}

fn describe(e: Error) -> String {
    format!("{e:?}")
}

impl Guest for Todo {
    fn add(title: String) -> Result<i64, String> {
        if title.trim().is_empty() {
            return Err("a to-do needs a title".into());
        }
        // Allocating the id and inserting happen together or not at all.
        let tx: Transaction = db()?.begin().map_err(describe)?;
        let rows = tx
            .query("SELECT COALESCE(MAX(id), 0) + 1 FROM todos", &[])
            .map_err(describe)?;
        let id = match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Int64(n)) => *n,
            Some(Value::Int32(n)) => i64::from(*n),
            Some(Value::Decimal(d)) => d.parse().map_err(|e| format!("id: {e}"))?,
            other => return Err(format!("unexpected id {other:?}")),
        };
        tx.execute(
            "INSERT INTO todos (id, title, done) VALUES ($1, $2, $3)",
            &[Value::Int64(id), Value::Text(title), Value::Boolean(false)],
        )
        .map_err(describe)?;
        tx.commit().map_err(describe)?;
        Ok(id)
    }

    fn list() -> Result<Vec<Item>, String> {
        let rows = db()?
            .query("SELECT id, title, done FROM todos ORDER BY id", &[])
            .map_err(describe)?;
        rows.rows
            .into_iter()
            .map(|row| match row.as_slice() {
                [id, Value::Text(title), done] => Ok(Item {
                    id: match id {
                        Value::Int64(n) => *n,
                        Value::Int32(n) => i64::from(*n),
                        other => return Err(format!("unexpected id {other:?}")),
                    },
                    title: title.clone(),
                    // SQLite stores booleans as integers.
                    done: matches!(done, Value::Boolean(true) | Value::Int64(1)),
                }),
                other => Err(format!("unexpected row {other:?}")),
            })
            .collect()
    }

    fn complete(id: i64) -> Result<bool, String> {
        let n = db()?
            .execute(
                "UPDATE todos SET done = $1 WHERE id = $2",
                &[Value::Boolean(true), Value::Int64(id)],
            )
            .map_err(describe)?;
        Ok(n == 1)
    }

    fn remove(id: i64) -> Result<bool, String> {
        let n = db()?
            .execute("DELETE FROM todos WHERE id = $1", &[Value::Int64(id)])
            .map_err(describe)?;
        Ok(n == 1)
    }
}

impl Task for Todo {
    fn run() -> Result<(), String> {
        for item in <Todo as Guest>::list()? {
            println!(
                "[{}] {} {}",
                if item.done { "x" } else { " " },
                item.id,
                item.title
            );
        }
        Ok(())
    }
}

/// Under `warden serve`: the table exists before the first request, and
/// health means the database answers.
impl warden_sdk::Lifecycle for Todo {
    fn init() -> Result<(), String> {
        db().map(drop)
    }

    fn health() -> Result<(), String> {
        db()?.query("SELECT 1", &[]).map_err(describe).map(drop)
    }

    fn shutdown() {}
}

export!(Todo);
warden_sdk::export_task!(Todo);
warden_sdk::export_lifecycle!(Todo);
