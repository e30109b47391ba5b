//! The subscription index: which subscriptions match a topic name (MQTT 3.1.1 and 5.0 section
//! 4.7, shared subscriptions of MQTT 5.0 section 4.8.2).
//!
//! This module owns the set of (client, filter) subscriptions and answers one question fast,
//! on the publish path: which of them match this topic? It is a trie over topic levels, so a
//! publish walks only the branches its levels can reach (the literal level, `+` and `#`)
//! instead of testing every filter.
//!
//! It must not decide anything about delivery: it does not compute QoS, apply No Local or
//! Retain As Published, merge several matches of one client into one delivery, or know which
//! sessions are online. It reports every matching subscription (a client with two overlapping
//! filters is reported twice) and, for a shared subscription group, reports the group once and
//! lets the caller [`pick`](SharedGroup::pick) a member. It does not validate filters either
//! (beyond a debug assertion): the codec has done that by the time a SUBSCRIBE reaches the
//! broker.
//!
//! Layout: nodes live in one `Vec` (an arena) and refer to each other by index. A filter or
//! topic may have up to 32,768 levels (`+/+/…` in 65,535 bytes), so nothing here recurses over
//! levels: a client could otherwise overflow the stack of a broker thread with one deep filter,
//! and dropping a deep chain of boxed nodes would recurse the same way. Children are kept in
//! `BTreeMap`s rather than `HashMap`s: iteration order is then deterministic (the core has no
//! randomness, and tests and replays see the same delivery order) and there is no hash to flood.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use mqtt_codec::topic::SharedFilter;
use mqtt_codec::SubscriptionOptions;

use crate::arena::{Arena, NodeId, ROOT};
use crate::types::ClientId;

/// What the broker remembers about one subscription besides its filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionEntry {
    pub options: SubscriptionOptions,
    /// The MQTT 5.0 Subscription Identifier, if the SUBSCRIBE carried one.
    pub identifier: Option<u32>,
}

/// One subscription matched by [`SubscriptionTree::for_each_match`].
#[derive(Debug, Clone, Copy)]
pub enum Match<'a> {
    /// A non-shared subscription of one client.
    Client {
        client: &'a ClientId,
        entry: &'a SubscriptionEntry,
    },
    /// A shared subscription group whose filter matched: the caller picks one member.
    Shared { group: &'a SharedGroup },
}

/// The subscribers of one shared subscription `$share/{name}/{filter}`. Its identity is the pair
/// (name, filter): the same share name on two filters makes two groups [MQTT 5.0 4.8.2].
#[derive(Debug)]
pub struct SharedGroup {
    name: Box<str>,
    filter: Box<str>,
    /// In the order the clients first subscribed; a re-subscription keeps its place.
    members: Vec<(ClientId, SubscriptionEntry)>,
    /// Index of the member to try first on the next pick. Atomic so that picking works through
    /// the `&self` that matching hands out; relaxed because it only spreads load, so a lost
    /// update costs fairness, never correctness.
    cursor: AtomicUsize,
}

impl SharedGroup {
    fn new(name: &str, filter: &str) -> SharedGroup {
        SharedGroup {
            name: name.into(),
            filter: filter.into(),
            members: Vec::new(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The share name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The topic filter the group subscribes to, without the `$share/{name}/` prefix.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The members, in the order they first subscribed.
    pub fn members(&self) -> &[(ClientId, SubscriptionEntry)] {
        &self.members
    }

    /// Picks the next member round robin among those for which `eligible` returns true (e.g.
    /// online sessions); if none is eligible, the next member regardless, so that the message
    /// is queued for someone rather than lost. `None` only if the group is empty.
    pub fn pick(
        &self,
        eligible: impl Fn(&ClientId) -> bool,
    ) -> Option<&(ClientId, SubscriptionEntry)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.load(Ordering::Relaxed) % n;
        let chosen = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| eligible(&self.members[i].0))
            .unwrap_or(start);
        // The next pick starts after the chosen member, not after `start`: otherwise members
        // that follow an ineligible run would be picked twice in a row.
        self.cursor.store((chosen + 1) % n, Ordering::Relaxed);
        Some(&self.members[chosen])
    }

    /// Adds or replaces `client`; true if it replaced.
    fn insert(&mut self, client: &ClientId, entry: SubscriptionEntry) -> bool {
        match self.members.iter_mut().find(|(c, _)| c == client) {
            Some((_, existing)) => {
                *existing = entry;
                true
            }
            None => {
                self.members.push((client.clone(), entry));
                false
            }
        }
    }

    /// Removes `client`; true if it was a member.
    fn remove(&mut self, client: &ClientId) -> bool {
        let Some(index) = self.members.iter().position(|(c, _)| c == client) else {
            return false;
        };
        self.members.remove(index);
        // Keep the cursor on the same next member: everyone after `index` moved down by one.
        let cursor = self.cursor.get_mut();
        if index < *cursor {
            *cursor -= 1;
        }
        true
    }
}

/// The subscriptions that end at one place in the trie.
#[derive(Debug, Default)]
struct Subscribers {
    clients: BTreeMap<ClientId, SubscriptionEntry>,
    /// Few per filter in practice, so a `Vec` searched by name.
    groups: Vec<SharedGroup>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.groups.is_empty()
    }

    fn get(&self, client: &ClientId, share: Option<&str>) -> Option<&SubscriptionEntry> {
        match share {
            None => self.clients.get(client),
            Some(name) => self
                .groups
                .iter()
                .find(|g| &*g.name == name)?
                .members
                .iter()
                .find(|(c, _)| c == client)
                .map(|(_, entry)| entry),
        }
    }

    /// Adds or replaces; true if it replaced.
    fn insert(
        &mut self,
        client: &ClientId,
        share: Option<&str>,
        filter: &str,
        entry: SubscriptionEntry,
    ) -> bool {
        match share {
            None => self.clients.insert(client.clone(), entry).is_some(),
            Some(name) => {
                let index = match self.groups.iter().position(|g| &*g.name == name) {
                    Some(index) => index,
                    None => {
                        self.groups.push(SharedGroup::new(name, filter));
                        self.groups.len() - 1
                    }
                };
                self.groups[index].insert(client, entry)
            }
        }
    }

    /// Removes; true if it existed. A group left without members is dropped.
    fn remove(&mut self, client: &ClientId, share: Option<&str>) -> bool {
        match share {
            None => self.clients.remove(client).is_some(),
            Some(name) => {
                let Some(index) = self.groups.iter().position(|g| &*g.name == name) else {
                    return false;
                };
                let removed = self.groups[index].remove(client);
                if self.groups[index].members.is_empty() {
                    self.groups.remove(index);
                }
                removed
            }
        }
    }

    fn visit<'a>(&'a self, visit: &mut impl FnMut(Match<'a>)) {
        for (client, entry) in &self.clients {
            visit(Match::Client { client, entry });
        }
        for group in &self.groups {
            visit(Match::Shared { group });
        }
    }
}

/// One topic level position in the trie: the filters whose levels so far lead here.
#[derive(Debug, Default)]
struct Node {
    /// Children by literal level (possibly empty, possibly starting with `$`).
    literal: BTreeMap<Box<str>, NodeId>,
    /// The child for a `+` level.
    plus: Option<NodeId>,
    /// Filters that end exactly here.
    exact: Subscribers,
    /// Filters that end with `#` after the levels leading here. `#` is always last, so it
    /// needs no node of its own.
    hash: Subscribers,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.plus.is_none()
            && self.exact.is_empty()
            && self.hash.is_empty()
    }

    fn slot(&self, slot: Slot) -> &Subscribers {
        match slot {
            Slot::Exact => &self.exact,
            Slot::Hash => &self.hash,
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Subscribers {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Hash => &mut self.hash,
        }
    }
}

/// Where in its last node a filter's subscriptions are kept.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Exact,
    Hash,
}

/// One step down a filter: the edge to follow, or the end of the filter.
#[derive(Debug, Clone, Copy)]
enum Step<'f> {
    Literal(&'f str),
    Plus,
    /// The filter ends here, in the given slot.
    End(Slot),
}

/// The steps of a plain (non-shared) filter, ending with exactly one [`Step::End`]. Only a
/// final `#` is the multi-level wildcard: an invalid filter such as `a/#/b` (which the codec
/// rejects) is then stored as literal levels, which no valid topic name can match, rather than
/// being confused with `a/#`.
fn steps(filter: &str) -> impl Iterator<Item = Step<'_>> {
    let mut levels = filter.split('/').peekable();
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        Some(match levels.next() {
            None => {
                done = true;
                Step::End(Slot::Exact)
            }
            Some("#") if levels.peek().is_none() => {
                done = true;
                Step::End(Slot::Hash)
            }
            Some("+") => Step::Plus,
            Some(level) => Step::Literal(level),
        })
    })
}

/// Splits `$share/{group}/{filter}` into the group and the filter matched.
fn split_share(filter: &str) -> (Option<&str>, &str) {
    debug_assert!(
        mqtt_codec::topic::validate_topic_filter(filter).is_ok(),
        "invalid topic filter {filter:?}"
    );
    match SharedFilter::parse(filter) {
        Some(Ok(shared)) => (Some(shared.group), shared.filter),
        // Malformed shares never get this far; stored as a plain filter they match nothing.
        _ => (None, filter),
    }
}

/// Every subscription of every client, indexed by filter levels.
#[derive(Debug, Default)]
pub struct SubscriptionTree {
    /// The arena; `nodes[ROOT]` is the root. Empty until the first subscription.
    nodes: Arena<Node>,
    /// Number of (client, filter) subscriptions.
    len: usize,
}

impl SubscriptionTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the subscription of `client` to `filter` (a valid filter, possibly
    /// `$share/{group}/{f}`). Returns true if it replaced an existing subscription of that
    /// client to that same filter string, which the broker needs for Retain Handling 1
    /// (MQTT 5.0 [MQTT-3.3.1-10]).
    pub fn subscribe(&mut self, client: &ClientId, filter: &str, entry: SubscriptionEntry) -> bool {
        let (share, plain) = split_share(filter);
        if self.nodes.is_empty() {
            self.nodes.alloc();
        }
        let mut node = ROOT;
        for step in steps(plain) {
            node = match step {
                Step::Plus => match self.nodes[node].plus {
                    Some(child) => child,
                    None => {
                        let child = self.nodes.alloc();
                        self.nodes[node].plus = Some(child);
                        child
                    }
                },
                Step::Literal(level) => match self.nodes[node].literal.get(level) {
                    Some(&child) => child,
                    None => {
                        // The only allocation for the level, and only when it is new.
                        let child = self.nodes.alloc();
                        self.nodes[node].literal.insert(level.into(), child);
                        child
                    }
                },
                Step::End(slot) => {
                    let replaced = self.nodes[node]
                        .slot_mut(slot)
                        .insert(client, share, plain, entry);
                    if !replaced {
                        self.len += 1;
                    }
                    return replaced;
                }
            };
        }
        unreachable!("steps() always ends with Step::End")
    }

    /// Removes the subscription of `client` to `filter`; returns true if it existed. Nodes left
    /// with no subscription below them are pruned.
    pub fn unsubscribe(&mut self, client: &ClientId, filter: &str) -> bool {
        let (share, plain) = split_share(filter);
        if self.nodes.is_empty() {
            return false;
        }
        // The nodes passed, each with the step that led to it, to prune bottom-up afterwards
        // without parent links.
        let mut path: Vec<(NodeId, Step<'_>)> = Vec::new();
        let mut node = ROOT;
        for step in steps(plain) {
            let child = match step {
                Step::Plus => self.nodes[node].plus,
                Step::Literal(level) => self.nodes[node].literal.get(level).copied(),
                Step::End(slot) => {
                    if !self.nodes[node].slot_mut(slot).remove(client, share) {
                        return false;
                    }
                    self.len -= 1;
                    break;
                }
            };
            let Some(child) = child else {
                return false;
            };
            path.push((child, step));
            node = child;
        }
        // Unlink empty nodes from the deepest up; the first non-empty one keeps its ancestors
        // alive. The root is never pruned.
        while let Some((child, step)) = path.pop() {
            if !self.nodes[child].is_empty() {
                break;
            }
            let parent = path.last().map_or(ROOT, |&(id, _)| id);
            match step {
                Step::Plus => self.nodes[parent].plus = None,
                Step::Literal(level) => {
                    self.nodes[parent].literal.remove(level);
                }
                Step::End(_) => unreachable!("the path holds only edges"),
            }
            // Reset rather than leave as is, to give back the capacity of its group list.
            self.nodes[child] = Node::default();
            self.nodes.release(child);
        }
        true
    }

    /// The subscription of `client` to `filter` (the full filter string, `$share/…` included).
    pub fn get(&self, client: &ClientId, filter: &str) -> Option<&SubscriptionEntry> {
        let (share, plain) = split_share(filter);
        if self.nodes.is_empty() {
            return None;
        }
        let mut node = ROOT;
        for step in steps(plain) {
            node = match step {
                Step::Plus => self.nodes[node].plus?,
                Step::Literal(level) => *self.nodes[node].literal.get(level)?,
                Step::End(slot) => return self.nodes[node].slot(slot).get(client, share),
            };
        }
        None
    }

    /// Number of (client, filter) subscriptions; a client in a shared group counts once.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `visit` for every subscription matching `topic` (a topic name, no wildcards):
    /// once per matching non-shared subscription and once per matching shared group.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(Match<'a>)) {
        if self.nodes.is_empty() {
            return;
        }
        // A filter whose first level is a wildcard does not match a topic starting with `$`
        // [MQTT-4.7.2-1]; that holds for the filter of a shared subscription too.
        let system = topic.starts_with('$');
        // The walk follows one branch at a time; where both the literal child and `+` match, the
        // `+` branch waits here. Allocated only if a branch actually forks.
        let mut pending: Vec<(NodeId, Option<&str>)> = Vec::new();
        // `rest` holds the levels not yet consumed (`Some("")` is one empty level; `None` means
        // the whole topic has been consumed).
        let mut current = Some((ROOT, Some(topic)));
        while let Some((id, rest)) = current.take().or_else(|| pending.pop()) {
            let node = &self.nodes[id];
            let wildcards_allowed = !(system && id == ROOT);
            // `#` matches the remaining levels, however many, including none: "sport/#" matches
            // "sport" (section 4.7.1.2). The root's `#` never sees zero levels (a topic has one).
            if wildcards_allowed {
                node.hash.visit(&mut visit);
            }
            let Some(rest) = rest else {
                node.exact.visit(&mut visit);
                continue;
            };
            let (level, next) = match rest.split_once('/') {
                Some((level, next)) => (level, Some(next)),
                None => (rest, None),
            };
            let literal = node.literal.get(level).map(|&child| (child, next));
            let plus = node
                .plus
                .filter(|_| wildcards_allowed)
                .map(|child| (child, next));
            match (literal, plus) {
                (Some(literal), Some(plus)) => {
                    current = Some(literal);
                    pending.push(plus);
                }
                (one, other) => current = one.or(other),
            }
        }
    }

    /// Nodes in use, the root included.
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.live()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_codec::QoS;

    fn id(s: &str) -> ClientId {
        ClientId::from(s)
    }

    fn entry(identifier: u32) -> SubscriptionEntry {
        SubscriptionEntry {
            options: SubscriptionOptions::default(),
            identifier: Some(identifier),
        }
    }

    /// What matched, as comparable text: `client:identifier` or `share name/filter`.
    fn matches_of(tree: &SubscriptionTree, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |m| {
            out.push(match m {
                Match::Client { client, entry } => {
                    format!("{client}:{}", entry.identifier.unwrap_or(0))
                }
                Match::Shared { group } => format!("share {}/{}", group.name(), group.filter()),
            })
        });
        out.sort();
        out
    }

    /// Whether one client subscribed to `filter` receives `topic`.
    fn filter_matches(filter: &str, topic: &str) -> bool {
        let mut tree = SubscriptionTree::new();
        tree.subscribe(&id("c"), filter, entry(1));
        !matches_of(&tree, topic).is_empty()
    }

    #[track_caller]
    fn assert_matching(filter: &str, yes: &[&str], no: &[&str]) {
        for topic in yes {
            assert!(
                filter_matches(filter, topic),
                "{filter:?} should match {topic:?}"
            );
        }
        for topic in no {
            assert!(
                !filter_matches(filter, topic),
                "{filter:?} should not match {topic:?}"
            );
        }
    }

    #[test]
    fn mqtt_4_7_1_2_hash_matches_parent_level() {
        // The spec's example: "sport/tennis/player1/#" also matches "sport/tennis/player1".
        assert_matching(
            "sport/tennis/player1/#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
            &[
                "sport/tennis",
                "sport/tennis/player2",
                "sport/tennis/player10",
            ],
        );
        assert_matching(
            "sport/#",
            &["sport", "sport/", "sport/a/b"],
            &["sports", "spor"],
        );
    }

    #[test]
    fn mqtt_4_7_1_2_hash_alone_matches_everything_but_dollar_topics() {
        assert_matching(
            "#",
            &["a", "a/b", "/", "/finance", "//"],
            &["$SYS", "$SYS/x"],
        );
    }

    #[test]
    fn mqtt_4_7_1_3_plus_matches_exactly_one_level() {
        // The spec's examples.
        assert_matching(
            "sport/tennis/+",
            &[
                "sport/tennis/player1",
                "sport/tennis/player2",
                "sport/tennis/",
            ],
            &["sport/tennis/player1/ranking", "sport/tennis"],
        );
        assert_matching("sport/+", &["sport/"], &["sport", "sport/a/b"]);
        assert_matching(
            "+/tennis/#",
            &["sport/tennis", "/tennis/x"],
            &["sport/golf"],
        );
        assert_matching(
            "sport/+/player1",
            &["sport/tennis/player1"],
            &["sport/player1"],
        );
    }

    #[test]
    fn mqtt_4_7_1_3_spec_examples_with_leading_slash() {
        // "+/+" and "/+" match "/finance"; "+" does not.
        assert_matching("+/+", &["/finance", "a/b", "/"], &["finance", "a/b/c"]);
        assert_matching("/+", &["/finance", "/"], &["finance", "a/b", "//x"]);
        assert_matching("+", &["finance", "a"], &["/finance", "a/b", "/"]);
    }

    #[test]
    fn empty_levels_are_levels() {
        assert_matching("a//b", &["a//b"], &["a/b", "a///b"]);
        assert_matching("a/+/b", &["a//b", "a/x/b"], &["a/b"]);
        assert_matching("a/", &["a/"], &["a", "a//"]);
        assert_matching("/a", &["/a"], &["a"]);
        assert_matching("+/+/+", &["//"], &["/"]);
    }

    #[test]
    fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
        assert_matching(
            "+/monitor/Clients",
            &["a/monitor/Clients"],
            &["$SYS/monitor/Clients"],
        );
        assert_matching("+", &["a"], &["$SYS"]);
        assert_matching("#", &["a"], &["$SYS/x"]);
        // A `$` level further down is an ordinary level.
        assert_matching("a/+", &["a/$x"], &[]);
        assert_matching("a/#", &["a/$x/y"], &[]);
    }

    #[test]
    fn mqtt_4_7_2_1_dollar_topics_matched_by_literal_dollar_level() {
        assert_matching(
            "$SYS/#",
            &["$SYS", "$SYS/monitor/Clients"],
            &["SYS/x", "$SYSTEM/x"],
        );
        assert_matching(
            "$SYS/monitor/+",
            &["$SYS/monitor/Clients"],
            &["$SYS/monitor"],
        );
        assert_matching("$SYS/monitor/Clients", &["$SYS/monitor/Clients"], &[]);
    }

    #[test]
    fn shared_subscription_matches_like_its_filter() {
        assert_matching(
            "$share/g/sport/+",
            &["sport/x"],
            &["sport", "$share/g/sport/x"],
        );
        assert_matching("$share/g/#", &["a", "a/b"], &["$SYS/x", "$share/g/a"]);
        assert_matching("$share/g/$SYS/#", &["$SYS/x"], &["a"]);
    }

    #[test]
    fn subscribe_reports_replacement_of_the_same_filter_string() {
        let mut tree = SubscriptionTree::new();
        let c = id("c");
        assert!(!tree.subscribe(&c, "a/+", entry(1)));
        assert!(tree.subscribe(&c, "a/+", entry(2)));
        assert_eq!(tree.get(&c, "a/+"), Some(&entry(2)));
        // A different filter string is a different subscription, even if it overlaps.
        assert!(!tree.subscribe(&c, "a/#", entry(3)));
        // So is a shared subscription to the same filter.
        assert!(!tree.subscribe(&c, "$share/g/a/+", entry(4)));
        assert!(tree.subscribe(&c, "$share/g/a/+", entry(5)));
        assert_eq!(tree.len(), 3);
        // Overlapping subscriptions of one client are each reported.
        assert_eq!(matches_of(&tree, "a/b"), ["c:2", "c:3", "share g/a/+"]);
    }

    #[test]
    fn unsubscribe_removes_only_that_subscription() {
        let mut tree = SubscriptionTree::new();
        let (c, d) = (id("c"), id("d"));
        tree.subscribe(&c, "a/b", entry(1));
        tree.subscribe(&d, "a/b", entry(2));
        tree.subscribe(&c, "a/#", entry(3));
        assert!(!tree.unsubscribe(&c, "a/c"));
        assert!(!tree.unsubscribe(&c, "$share/g/a/b"));
        assert!(!tree.unsubscribe(&id("e"), "a/b"));
        assert!(tree.unsubscribe(&c, "a/b"));
        assert!(!tree.unsubscribe(&c, "a/b"));
        assert_eq!(tree.len(), 2);
        assert_eq!(matches_of(&tree, "a/b"), ["c:3", "d:2"]);
        assert_eq!(tree.get(&c, "a/b"), None);
    }

    #[test]
    fn unsubscribing_everything_prunes_every_node() {
        let mut tree = SubscriptionTree::new();
        let filters = [
            "a/b/c",
            "a/+/c",
            "a/#",
            "#",
            "+",
            "$share/g/a/b/c",
            "a//",
            "a/b/c/d/e",
        ];
        let clients = [id("c"), id("d")];
        for f in filters {
            for c in &clients {
                tree.subscribe(c, f, entry(1));
            }
        }
        assert_eq!(tree.len(), filters.len() * 2);
        for f in filters {
            for c in &clients {
                assert!(tree.unsubscribe(c, f));
            }
        }
        assert!(tree.is_empty());
        assert_eq!(tree.live_nodes(), 1, "only the root remains");
        assert!(matches_of(&tree, "a/b/c").is_empty());

        // Freed nodes are reused: the same churn again does not grow the arena.
        let arena = tree.nodes.allocated();
        for f in filters {
            tree.subscribe(&clients[0], f, entry(1));
        }
        for f in filters {
            tree.unsubscribe(&clients[0], f);
        }
        assert_eq!(tree.nodes.allocated(), arena);
    }

    #[test]
    fn pruning_stops_at_a_node_still_in_use() {
        let mut tree = SubscriptionTree::new();
        let c = id("c");
        tree.subscribe(&c, "a/b", entry(1));
        tree.subscribe(&c, "a/b/c/d", entry(2));
        tree.unsubscribe(&c, "a/b/c/d");
        assert_eq!(tree.live_nodes(), 3, "root, a, b");
        assert_eq!(matches_of(&tree, "a/b"), ["c:1"]);
        tree.subscribe(&c, "a/+/#", entry(3));
        tree.unsubscribe(&c, "a/b");
        assert_eq!(tree.live_nodes(), 3, "root, a, +");
        assert_eq!(matches_of(&tree, "a/b"), ["c:3"]);
    }

    #[test]
    fn mqtt_4_8_2_groups_are_identified_by_name_and_filter() {
        let mut tree = SubscriptionTree::new();
        let (c, d) = (id("c"), id("d"));
        tree.subscribe(&c, "$share/g/a/+", entry(1));
        tree.subscribe(&d, "$share/g/a/+", entry(2));
        tree.subscribe(&c, "$share/g/a/#", entry(3));
        tree.subscribe(&c, "$share/h/a/+", entry(4));
        tree.subscribe(&c, "a/+", entry(5));
        assert_eq!(tree.len(), 5);
        assert_eq!(
            matches_of(&tree, "a/x"),
            ["c:5", "share g/a/#", "share g/a/+", "share h/a/+"]
        );
        let mut members = Vec::new();
        tree.for_each_match("a/x", |m| {
            if let Match::Shared { group } = m {
                if group.name() == "g" && group.filter() == "a/+" {
                    members = group.members().to_vec();
                }
            }
        });
        assert_eq!(members, [(c.clone(), entry(1)), (d.clone(), entry(2))]);
        // The last member leaving removes the group.
        tree.unsubscribe(&c, "$share/h/a/+");
        assert_eq!(
            matches_of(&tree, "a/x"),
            ["c:5", "share g/a/#", "share g/a/+"]
        );
    }

    #[test]
    fn shared_member_resubscribing_keeps_its_place() {
        let mut tree = SubscriptionTree::new();
        let (c, d) = (id("c"), id("d"));
        tree.subscribe(&c, "$share/g/t", entry(1));
        tree.subscribe(&d, "$share/g/t", entry(2));
        assert!(tree.subscribe(&c, "$share/g/t", entry(3)));
        tree.for_each_match("t", |m| {
            let Match::Shared { group } = m else {
                panic!("{m:?}")
            };
            assert_eq!(
                group.members(),
                [(c.clone(), entry(3)), (d.clone(), entry(2))]
            );
        });
    }

    fn group_with(members: &[&str]) -> SharedGroup {
        let mut group = SharedGroup::new("g", "t");
        for (i, m) in members.iter().enumerate() {
            group.insert(&id(m), entry(i as u32));
        }
        group
    }

    fn picks(group: &SharedGroup, n: usize, eligible: impl Fn(&ClientId) -> bool) -> String {
        (0..n)
            .map(|_| {
                group
                    .pick(&eligible)
                    .map_or("-".into(), |(c, _)| c.to_string())
            })
            .collect()
    }

    #[test]
    fn pick_is_round_robin() {
        let group = group_with(&["a", "b", "c"]);
        assert_eq!(picks(&group, 7, |_| true), "abcabca");
    }

    #[test]
    fn pick_skips_ineligible_members() {
        let group = group_with(&["a", "b", "c", "d"]);
        assert_eq!(picks(&group, 6, |c| &**c != "b" && &**c != "c"), "adadad");
    }

    #[test]
    fn pick_falls_back_to_round_robin_when_none_is_eligible() {
        let group = group_with(&["a", "b", "c"]);
        assert_eq!(picks(&group, 4, |_| false), "abca");
    }

    #[test]
    fn pick_from_empty_group_is_none() {
        assert_eq!(picks(&group_with(&[]), 2, |_| true), "--");
    }

    #[test]
    fn pick_continues_with_the_same_member_after_a_removal() {
        let mut group = group_with(&["a", "b", "c", "d"]);
        assert_eq!(picks(&group, 2, |_| true), "ab");
        group.remove(&id("a")); // before the cursor
        assert_eq!(picks(&group, 1, |_| true), "c");
        group.remove(&id("d")); // the cursor's member: the next one is picked instead
        assert_eq!(picks(&group, 3, |_| true), "bcb");
    }

    #[test]
    fn entry_options_are_reported() {
        let mut tree = SubscriptionTree::new();
        let e = SubscriptionEntry {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                ..SubscriptionOptions::default()
            },
            identifier: None,
        };
        tree.subscribe(&id("c"), "x", e.clone());
        let mut seen = None;
        tree.for_each_match("x", |m| {
            if let Match::Client { entry, .. } = m {
                seen = Some(entry.clone());
            }
        });
        assert_eq!(seen, Some(e));
    }

    #[test]
    fn deep_filters_and_topics_do_not_overflow_the_stack() {
        // 32,768 levels, the most a 65,535-byte filter can have; recursion per level would
        // overflow a test thread's 2 MiB stack.
        let filter = vec!["+"; 32_768].join("/");
        let topic = vec![""; 32_768].join("/");
        let mut tree = SubscriptionTree::new();
        tree.subscribe(&id("c"), &filter, entry(1));
        tree.subscribe(&id("c"), &format!("{topic}/#"), entry(2));
        assert_eq!(matches_of(&tree, &topic), ["c:1", "c:2"]);
        assert!(tree.unsubscribe(&id("c"), &filter));
        assert!(tree.unsubscribe(&id("c"), &format!("{topic}/#")));
        assert_eq!(tree.live_nodes(), 1);
    }

    mod model {
        //! The tree against a naive model: a list of subscriptions, each tested with a
        //! straightforward matcher.

        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        use crate::test_model::matches;

        #[derive(Default)]
        struct Model {
            /// Non-shared: (client, filter) → entry.
            plain: BTreeMap<(ClientId, String), SubscriptionEntry>,
            /// Shared: (name, filter) → members in subscription order.
            groups: BTreeMap<(String, String), Members>,
        }

        impl Model {
            fn subscribe(&mut self, client: &ClientId, filter: &str, e: SubscriptionEntry) -> bool {
                match SharedFilter::parse(filter) {
                    None => self
                        .plain
                        .insert((client.clone(), filter.to_string()), e)
                        .is_some(),
                    Some(shared) => {
                        let shared = shared.unwrap();
                        let key = (shared.group.to_string(), shared.filter.to_string());
                        let members = self.groups.entry(key).or_default();
                        match members.iter_mut().find(|(c, _)| c == client) {
                            Some(m) => {
                                m.1 = e;
                                true
                            }
                            None => {
                                members.push((client.clone(), e));
                                false
                            }
                        }
                    }
                }
            }

            fn unsubscribe(&mut self, client: &ClientId, filter: &str) -> bool {
                match SharedFilter::parse(filter) {
                    None => self
                        .plain
                        .remove(&(client.clone(), filter.to_string()))
                        .is_some(),
                    Some(shared) => {
                        let shared = shared.unwrap();
                        let key = (shared.group.to_string(), shared.filter.to_string());
                        let Some(members) = self.groups.get_mut(&key) else {
                            return false;
                        };
                        let before = members.len();
                        members.retain(|(c, _)| c != client);
                        let removed = members.len() < before;
                        if members.is_empty() {
                            self.groups.remove(&key);
                        }
                        removed
                    }
                }
            }

            /// Every (client, full filter) subscribed.
            fn all(&self) -> Vec<(ClientId, String, SubscriptionEntry)> {
                let plain = self
                    .plain
                    .iter()
                    .map(|((c, f), e)| (c.clone(), f.clone(), e.clone()));
                let shared = self.groups.iter().flat_map(|((g, f), members)| {
                    members
                        .iter()
                        .map(move |(c, e)| (c.clone(), format!("$share/{g}/{f}"), e.clone()))
                });
                plain.chain(shared).collect()
            }

            fn len(&self) -> usize {
                self.plain.len() + self.groups.values().map(Vec::len).sum::<usize>()
            }

            fn expected(&self, topic: &str) -> Outcome {
                let mut clients: Vec<_> = self
                    .plain
                    .iter()
                    .filter(|((_, f), _)| matches(f, topic))
                    .map(|((c, _), e)| (c.clone(), e.clone()))
                    .collect();
                clients.sort_by_key(|(c, e)| (c.clone(), e.identifier));
                let groups = self
                    .groups
                    .iter()
                    .filter(|((_, f), _)| matches(f, topic))
                    .map(|((g, f), m)| (g.clone(), f.clone(), m.clone()))
                    .collect();
                Outcome { clients, groups }
            }
        }

        type Members = Vec<(ClientId, SubscriptionEntry)>;

        /// What matched, in a canonical order.
        #[derive(Debug, PartialEq)]
        struct Outcome {
            clients: Members,
            /// (name, filter, members) of each matching group.
            groups: Vec<(String, String, Members)>,
        }

        fn actual(tree: &SubscriptionTree, topic: &str) -> Outcome {
            let mut clients = Vec::new();
            let mut groups = Vec::new();
            tree.for_each_match(topic, |m| match m {
                Match::Client { client, entry } => clients.push((client.clone(), entry.clone())),
                Match::Shared { group } => groups.push((
                    group.name().to_string(),
                    group.filter().to_string(),
                    group.members().to_vec(),
                )),
            });
            clients.sort_by_key(|(c, e)| (c.clone(), e.identifier));
            groups.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            Outcome { clients, groups }
        }

        const LEVELS: [&str; 4] = ["a", "b", "", "$x"];

        fn topic() -> impl Strategy<Value = String> {
            prop::collection::vec(prop::sample::select(LEVELS.to_vec()), 1..=4)
                .prop_map(|levels| levels.join("/"))
                .prop_filter("a topic name is not empty", |t| !t.is_empty())
        }

        fn filter() -> impl Strategy<Value = String> {
            let level = prop_oneof![
                3 => prop::sample::select(LEVELS.to_vec()),
                1 => Just("+"),
            ];
            (
                prop::collection::vec(level, 1..=4),
                any::<bool>(),
                prop::option::of(prop::sample::select(vec!["g", "h"])),
            )
                .prop_map(|(mut levels, hash, share)| {
                    if hash {
                        // `#` as the last level, possibly the only one.
                        *levels.last_mut().unwrap() = "#";
                    }
                    let plain = levels.join("/");
                    match share {
                        Some(g) => format!("$share/{g}/{plain}"),
                        None => plain,
                    }
                })
                .prop_filter("a valid filter", |f| {
                    mqtt_codec::topic::validate_topic_filter(f).is_ok()
                })
        }

        #[derive(Debug, Clone)]
        enum Op {
            Subscribe {
                client: u8,
                filter: String,
                id: u32,
            },
            Unsubscribe {
                client: u8,
                filter: String,
            },
            /// Unsubscribes the n-th existing subscription (mod their number), so that removals
            /// hit often.
            UnsubscribeExisting(usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..3u8, filter(), 0..1000u32)
                    .prop_map(|(client, filter, id)| Op::Subscribe { client, filter, id }),
                1 => (0..3u8, filter()).prop_map(|(client, filter)| Op::Unsubscribe { client, filter }),
                2 => any::<usize>().prop_map(Op::UnsubscribeExisting),
            ]
        }

        fn client(n: u8) -> ClientId {
            ClientId::from(format!("c{n}"))
        }

        /// Every topic of up to three levels over the alphabet.
        fn all_short_topics() -> Vec<String> {
            let mut topics: Vec<String> = LEVELS.iter().map(|l| l.to_string()).collect();
            let mut last = topics.clone();
            for _ in 1..3 {
                last = last
                    .iter()
                    .flat_map(|t| LEVELS.iter().map(move |l| format!("{t}/{l}")))
                    .collect();
                topics.extend(last.iter().cloned());
            }
            topics.retain(|t| !t.is_empty());
            topics
        }

        /// Live nodes of a tree built afresh from the model: the minimum for its filters.
        fn minimal_nodes(model: &Model) -> usize {
            let mut fresh = SubscriptionTree::new();
            for (c, f, e) in model.all() {
                fresh.subscribe(&c, &f, e);
            }
            fresh.live_nodes().max(1)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn tree_agrees_with_naive_model(
                ops in prop::collection::vec(op(), 1..40),
                topics in prop::collection::vec(topic(), 1..8),
            ) {
                let mut tree = SubscriptionTree::new();
                let mut model = Model::default();
                for op in ops {
                    match op {
                        Op::Subscribe { client: c, filter, id } => {
                            let e = SubscriptionEntry {
                                options: SubscriptionOptions::default(),
                                identifier: Some(id),
                            };
                            let replaced = model.subscribe(&client(c), &filter, e.clone());
                            prop_assert_eq!(tree.subscribe(&client(c), &filter, e.clone()), replaced);
                            prop_assert_eq!(tree.get(&client(c), &filter), Some(&e));
                        }
                        Op::Unsubscribe { client: c, filter } => {
                            let removed = model.unsubscribe(&client(c), &filter);
                            prop_assert_eq!(tree.unsubscribe(&client(c), &filter), removed);
                            prop_assert_eq!(tree.get(&client(c), &filter), None);
                        }
                        Op::UnsubscribeExisting(n) => {
                            let all = model.all();
                            if !all.is_empty() {
                                let (c, f, _) = &all[n % all.len()];
                                prop_assert!(model.unsubscribe(c, f));
                                prop_assert!(tree.unsubscribe(c, f));
                            }
                        }
                    }
                    prop_assert_eq!(tree.len(), model.len());
                    prop_assert_eq!(tree.is_empty(), model.len() == 0);
                    prop_assert_eq!(tree.live_nodes().max(1), minimal_nodes(&model));
                    for t in &topics {
                        prop_assert_eq!(actual(&tree, t), model.expected(t), "topic {:?}", t);
                    }
                }
                for t in all_short_topics() {
                    prop_assert_eq!(actual(&tree, &t), model.expected(&t), "topic {:?}", t);
                }
                for (c, f, _) in model.all() {
                    prop_assert!(tree.unsubscribe(&c, &f));
                }
                prop_assert!(tree.is_empty());
                prop_assert!(tree.live_nodes() <= 1, "nodes left: {:?}", tree.nodes);
            }
        }

        #[test]
        fn naive_matcher_agrees_with_the_spec_examples() {
            assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
            assert!(matches("sport/#", "sport"));
            assert!(!matches("sport/+", "sport"));
            assert!(matches("+/+", "/finance"));
            assert!(!matches("+", "/finance"));
            assert!(!matches("#", "$SYS/x"));
            assert!(matches("$SYS/#", "$SYS"));
        }
    }
}
