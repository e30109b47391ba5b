//! The TOML examples of docs/security.md parse, each with the parser that reads that kind of
//! file: a broker configuration through `Config::parse` (syntax and validation, as
//! `corvus --config` does), an ACL file through `Acl::parse`. A doc example that no longer
//! parses fails the build.
//!
//! Every ```` ```toml ```` block is checked: a block whose first line is a comment naming
//! `acl.toml` is an ACL file, any other is a whole broker configuration (so a snippet must be
//! complete enough to start a broker). There is no way to skip a block: a fence whose info
//! string starts with `toml` but is not exactly `toml` fails the test, so that a fragment is
//! made whole instead of being quietly left out.

use std::path::Path;

use corvus_auth::acl::{Acl, RuleSubject};
use corvus_server::config::ListenerKind;
use corvus_server::Config;

const DOC: &str = include_str!("../../../docs/security.md");

/// A fenced code block of a Markdown document.
struct Block {
    /// The info string after the opening fence (`toml`, `sh`, …), trimmed.
    info: String,
    /// The 1-based line of the opening fence, for messages.
    line: usize,
    /// The contents, with the fence's indentation removed.
    text: String,
}

/// Every fenced (```` ``` ````) code block of `doc`, indented ones (in list items) included.
fn fenced_blocks(doc: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut text = String::new();
        let mut closed = false;
        for (_, inner) in lines.by_ref() {
            if inner.trim() == "```" {
                closed = true;
                break;
            }
            // Remove at most the fence's indentation (CommonMark): deeper lines keep the rest.
            let strip = inner.len() - inner.trim_start().len();
            text.push_str(&inner[strip.min(indent)..]);
            text.push('\n');
        }
        assert!(closed, "docs/security.md:{}: unclosed code block", n + 1);
        blocks.push(Block {
            info: info.trim().to_string(),
            line: n + 1,
            text,
        });
    }
    blocks
}

/// Whether a ```toml block is an ACL file: its first line says so (`# acl.toml: …`).
fn is_acl_file(text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|first| first.starts_with("# acl.toml"))
}

#[test]
fn the_fences_are_found() {
    // The extractor itself: every fence of the doc opens or closes a block.
    let fences = DOC
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count();
    let blocks = fenced_blocks(DOC);
    assert_eq!(fences, 2 * blocks.len(), "unbalanced fences");
    assert!(blocks.iter().any(|b| b.info == "sh"));
    assert!(blocks.iter().any(|b| b.info.is_empty()));
}

#[test]
fn every_toml_example_of_security_md_parses() {
    let blocks = fenced_blocks(DOC);
    for block in &blocks {
        assert!(
            !block.info.starts_with("toml") || block.info == "toml",
            "docs/security.md:{}: a ```{} block is not checked; make the example a whole \
             config or ACL file, tagged ```toml",
            block.line,
            block.info
        );
    }
    let toml: Vec<&Block> = blocks.iter().filter(|b| b.info == "toml").collect();
    let (acls, configs): (Vec<&Block>, Vec<&Block>) =
        toml.iter().partition(|b| is_acl_file(&b.text));
    // The doc shows an mqtts listener, a wss listener and an ACL file at least: if the
    // extraction found fewer, it is broken, not the doc.
    assert!(configs.len() >= 2, "{} config examples", configs.len());
    assert!(!acls.is_empty(), "no ACL example");

    let mut kinds = Vec::new();
    for block in configs {
        let config = Config::parse(&block.text).unwrap_or_else(|e| {
            panic!(
                "docs/security.md:{}: the example is not a valid config: {e}\n{}",
                block.line, block.text
            )
        });
        for listener in &config.listeners {
            if matches!(listener.kind, ListenerKind::Mqtts | ListenerKind::Wss) {
                assert!(
                    listener.tls_files().is_some(),
                    "docs/security.md:{}: a TLS listener without its files",
                    block.line
                );
            }
            kinds.push(listener.kind);
        }
    }
    // The two transports the TLS section documents with an example.
    for kind in [ListenerKind::Mqtts, ListenerKind::Wss] {
        assert!(kinds.contains(&kind), "no {} example", kind.name());
    }

    for block in acls {
        let acl = Acl::parse(&block.text, Path::new("acl.toml")).unwrap_or_else(|e| {
            panic!(
                "docs/security.md:{}: the example is not a valid ACL file: {e}\n{}",
                block.line, block.text
            )
        });
        assert!(
            !acl.rules().is_empty(),
            "docs/security.md:{}: an ACL example with no rule",
            block.line
        );
    }
}

/// The ACL example grants what the text around it says: everyone their own subtree, `ops`
/// the devices and `$SYS`, anonymous clients `public/#` read-only.
#[test]
fn the_acl_example_is_the_one_described() {
    let block = fenced_blocks(DOC)
        .into_iter()
        .find(|b| b.info == "toml" && is_acl_file(&b.text))
        .expect("an ACL example");
    let acl = Acl::parse(&block.text, Path::new("acl.toml"))
        .unwrap_or_else(|e| panic!("docs/security.md:{}: {e}", block.line));
    let subjects: Vec<&RuleSubject> = acl.rules().iter().map(|r| &r.subject).collect();
    assert_eq!(
        subjects,
        [
            &RuleSubject::Everyone,
            &RuleSubject::User("ops".into()),
            &RuleSubject::Anonymous
        ]
    );
}
