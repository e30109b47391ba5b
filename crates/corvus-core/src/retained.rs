//! Retained messages (MQTT 3.1.1 and 5.0 section 3.3.1.3): at most one per topic, handed to
//! every new subscription whose filter matches it.
//!
//! This module owns the store: replacing and deleting a topic's retained message (an empty
//! payload deletes: MQTT 3.1.1 [MQTT-3.3.1-10], [MQTT-3.3.1-11], MQTT 5.0 [MQTT-3.3.1-6],
//! [MQTT-3.3.1-7]), finding the messages a filter matches, dropping expired messages, and
//! keeping count of what it holds. It is a trie over topic levels, so a subscription walks only
//! the branches its filter reaches: an exact filter costs one lookup per level, whatever the
//! number of retained topics.
//!
//! It must not decide delivery: whether a PUBLISH is retained at all, Retain Handling, Retain
//! As Published, QoS, and size limits are the broker's, which reads [`RetainedStore::len`] and
//! [`RetainedStore::bytes`] to enforce them. It never reads a clock: callers pass `now`.
//!
//! Layout: as in [`crate::topic_tree`], nodes live in an arena and refer to each other by
//! index, and nothing recurses over levels, because a topic can have 32,768 levels and a
//! publisher must not be able to overflow a stack with one. Children are in `BTreeMap`s, which
//! makes every traversal deterministic: results come in topic-level order.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::arena::{Arena, NodeId, ROOT};
use crate::types::{Message, Millis};

/// One topic level position: the message retained for the topic that ends here, if any, and
/// the longer topics that go through it.
#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<str>, NodeId>,
    message: Option<Arc<Message>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.message.is_none()
    }
}

/// What one message counts for in [`RetainedStore::bytes`].
fn cost(message: &Message) -> usize {
    message.topic.len() + message.payload.len()
}

/// Splits the first level off `rest`; the remainder is `None` after the last level.
fn split_level(rest: &str) -> (&str, Option<&str>) {
    match rest.split_once('/') {
        Some((level, next)) => (level, Some(next)),
        None => (rest, None),
    }
}

/// The retained messages, one per topic, indexed by topic levels.
#[derive(Debug, Default)]
pub struct RetainedStore {
    /// The arena; `nodes[ROOT]` is the root. Empty until the first message.
    nodes: Arena<Node>,
    len: usize,
    bytes: usize,
    /// How many stored messages have an expiry time, so that purging a store where none
    /// expires (the usual case) costs nothing.
    expiring: usize,
}

impl RetainedStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `message` as the retained message of its topic, replacing any; an empty payload
    /// deletes the topic's retained message instead and is not stored (MQTT 3.1.1
    /// [MQTT-3.3.1-10], [MQTT-3.3.1-11]; MQTT 5.0 [MQTT-3.3.1-6], [MQTT-3.3.1-7]). Returns the
    /// replaced or removed message, if any.
    pub fn set(&mut self, message: Arc<Message>) -> Option<Arc<Message>> {
        if message.payload.is_empty() {
            return self.remove(&message.topic);
        }
        debug_assert!(
            mqtt_codec::topic::validate_topic_name(&message.topic).is_ok(),
            "invalid topic name {:?}",
            &*message.topic
        );
        if self.nodes.is_empty() {
            self.nodes.alloc();
        }
        let mut node = ROOT;
        for level in message.topic.split('/') {
            node = match self.nodes[node].children.get(level) {
                Some(&child) => child,
                None => {
                    let child = self.nodes.alloc();
                    self.nodes[node].children.insert(level.into(), child);
                    child
                }
            };
        }
        self.count(&message);
        let old = self.nodes[node].message.replace(message);
        if let Some(old) = &old {
            self.forget(old);
        }
        old
    }

    /// Deletes the retained message of `topic`; returns it if there was one.
    pub fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        if self.nodes.is_empty() {
            return None;
        }
        // The nodes passed, with the level that led to each, to prune bottom-up afterwards
        // without parent links.
        let mut path: Vec<(NodeId, &str)> = Vec::new();
        let mut node = ROOT;
        for level in topic.split('/') {
            node = *self.nodes[node].children.get(level)?;
            path.push((node, level));
        }
        let old = self.nodes[node].message.take()?;
        self.forget(&old);
        while let Some((child, level)) = path.pop() {
            if !self.nodes[child].is_empty() {
                break;
            }
            let parent = path.last().map_or(ROOT, |&(id, _)| id);
            self.nodes[parent].children.remove(level);
            self.nodes.release(child);
        }
        Some(old)
    }

    /// The retained message of `topic`, expired or not.
    pub fn get(&self, topic: &str) -> Option<&Arc<Message>> {
        let mut node = self.nodes.root()?;
        for level in topic.split('/') {
            node = &self.nodes[*node.children.get(level)?];
        }
        node.message.as_ref()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total topic and payload bytes held (for limits and metrics), kept up to date as messages
    /// come and go.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every retained message whose topic matches `filter` (a valid, non-shared filter), except
    /// those expired at `now`, in topic-level order. Walks the trie by the filter's levels: an
    /// exact filter visits one node per level; `+` visits the children of one node; `#` visits
    /// the subtree it covers. A filter whose first level is `+` or `#` does not match topics
    /// starting with `$` [MQTT-4.7.2-1].
    pub fn matching(&self, filter: &str, now: Millis) -> Vec<Arc<Message>> {
        debug_assert!(
            mqtt_codec::topic::SharedFilter::parse(filter).is_none()
                && mqtt_codec::topic::validate_topic_filter(filter).is_ok(),
            "not a valid non-shared filter: {filter:?}"
        );
        let mut found = Vec::new();
        if self.nodes.is_empty() {
            return found;
        }
        let mut emit = |node: &Node| {
            if let Some(message) = &node.message {
                if !message.is_expired(now) {
                    found.push(Arc::clone(message));
                }
            }
        };
        // Children are pushed in reverse so that they pop, and so come out, in order.
        let mut stack = vec![Task::Filter(ROOT, Some(filter))];
        while let Some(task) = stack.pop() {
            match task {
                Task::Subtree(id) => {
                    let node = &self.nodes[id];
                    emit(node);
                    stack.extend(node.children.values().rev().map(|&c| Task::Subtree(c)));
                }
                Task::Filter(id, None) => emit(&self.nodes[id]),
                Task::Filter(id, Some(rest)) => {
                    let node = &self.nodes[id];
                    // Only wildcards are restricted: a literal `$SYS` level matches `$SYS`.
                    let visible = |level: &str| id != ROOT || !level.starts_with('$');
                    match split_level(rest) {
                        // `#` matches the parent level too: "sport/#" matches "sport"
                        // (section 4.7.1.2). The root holds no message, so "#" adds none.
                        ("#", None) => {
                            emit(node);
                            stack.extend(
                                node.children
                                    .iter()
                                    .rev()
                                    .filter(|(level, _)| visible(level))
                                    .map(|(_, &c)| Task::Subtree(c)),
                            );
                        }
                        ("+", next) => stack.extend(
                            node.children
                                .iter()
                                .rev()
                                .filter(|(level, _)| visible(level))
                                .map(|(_, &c)| Task::Filter(c, next)),
                        ),
                        (level, next) => {
                            if let Some(&child) = node.children.get(level) {
                                stack.push(Task::Filter(child, next));
                            }
                        }
                    }
                }
            }
        }
        found
    }

    /// Removes every message expired at `now`; returns how many.
    pub fn purge_expired(&mut self, now: Millis) -> usize {
        if self.expiring == 0 {
            return 0;
        }
        // Nodes in pre-order, then handled in reverse so that each node's children are done,
        // and pruned if emptied, before the node itself is looked at.
        let mut order = Vec::new();
        let mut stack = vec![ROOT];
        while let Some(id) = stack.pop() {
            order.push(id);
            stack.extend(self.nodes[id].children.values());
        }
        let mut purged = 0;
        for &id in order.iter().rev() {
            if let Some(message) = self.nodes[id].message.take_if(|m| m.is_expired(now)) {
                self.forget(&message);
                purged += 1;
            }
            let mut children = std::mem::take(&mut self.nodes[id].children);
            children.retain(|_, &mut child| {
                let keep = !self.nodes[child].is_empty();
                if !keep {
                    self.nodes.release(child);
                }
                keep
            });
            self.nodes[id].children = children;
        }
        purged
    }

    /// Iterates over all retained messages, expired or not, in topic-level order (for admin
    /// and persistence).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Message>> {
        let mut stack: Vec<NodeId> = if self.nodes.is_empty() {
            Vec::new()
        } else {
            vec![ROOT]
        };
        std::iter::from_fn(move || {
            while let Some(id) = stack.pop() {
                let node = &self.nodes[id];
                stack.extend(node.children.values().rev());
                if let Some(message) = &node.message {
                    return Some(message);
                }
            }
            None
        })
    }

    /// Counts a message into the totals.
    fn count(&mut self, message: &Message) {
        self.len += 1;
        self.bytes += cost(message);
        self.expiring += usize::from(message.expires_at.is_some());
    }

    /// Counts a message out of the totals.
    fn forget(&mut self, message: &Message) {
        self.len -= 1;
        self.bytes -= cost(message);
        self.expiring -= usize::from(message.expires_at.is_some());
    }

    /// Nodes in use, the root included.
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.live()
    }
}

/// A step of [`RetainedStore::matching`]'s walk.
enum Task<'f> {
    /// Match the node's subtree against the filter levels left (`None`: all consumed).
    Filter(NodeId, Option<&'f str>),
    /// Take the node and everything below it (under a `#`).
    Subtree(NodeId),
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_codec::{MqttString, QoS};

    fn msg(topic: &str, payload: &str) -> Arc<Message> {
        expiring(topic, payload, None)
    }

    fn expiring(topic: &str, payload: &str, expires_at: Option<Millis>) -> Arc<Message> {
        Arc::new(Message {
            topic: MqttString::try_from(topic).unwrap(),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            expires_at,
            publisher: None,
            received_at: None,
        })
    }

    fn store_of(topics: &[&str]) -> RetainedStore {
        let mut store = RetainedStore::new();
        for t in topics {
            store.set(msg(t, "x"));
        }
        store
    }

    fn topics(messages: &[Arc<Message>]) -> Vec<&str> {
        messages.iter().map(|m| &*m.topic).collect()
    }

    /// Topics used by the matching tests, with empty levels and `$` topics.
    const TOPICS: &[&str] = &[
        "sport",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
        "sport/",
        "/finance",
        "finance",
        "a//b",
        "$SYS",
        "$SYS/monitor/Clients",
    ];

    #[track_caller]
    fn assert_matching(filter: &str, expected: &[&str]) {
        let store = store_of(TOPICS);
        assert_eq!(
            topics(&store.matching(filter, 0)),
            expected,
            "filter {filter:?}"
        );
    }

    #[test]
    fn mqtt_3_3_1_5_set_replaces_the_topics_retained_message() {
        let mut store = RetainedStore::new();
        let first = msg("a/b", "1");
        assert_eq!(store.set(first.clone()), None);
        assert_eq!(store.set(msg("a/b", "22")), Some(first));
        assert_eq!(store.len(), 1);
        assert_eq!(store.get("a/b").unwrap().payload, "22");
        assert_eq!(store.bytes(), 3 + 2);
    }

    // Numbered as in MQTT 3.1.1; MQTT 5.0 has the same rules as [MQTT-3.3.1-6] and -7.
    #[test]
    fn mqtt_3_3_1_10_empty_payload_deletes_the_retained_message() {
        let mut store = RetainedStore::new();
        let first = msg("a/b", "1");
        store.set(first.clone());
        assert_eq!(store.set(msg("a/b", "")), Some(first));
        assert_eq!(store.get("a/b"), None);
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
        assert_eq!(store.live_nodes(), 1, "the topic's nodes are pruned");
    }

    #[test]
    fn mqtt_3_3_1_11_empty_payload_is_never_stored() {
        let mut store = RetainedStore::new();
        assert_eq!(store.set(msg("a/b", "")), None);
        assert!(store.is_empty());
        assert_eq!(store.get("a/b"), None);
        assert_eq!(store.live_nodes(), 0);
    }

    #[test]
    fn remove_returns_the_message_and_prunes_only_unused_nodes() {
        let mut store = store_of(&["a", "a/b/c", "a/d"]);
        assert_eq!(store.remove("a/b"), None, "a node without a message");
        assert_eq!(store.remove("x"), None);
        assert_eq!(store.remove("a/b/c").unwrap().topic.as_str(), "a/b/c");
        assert_eq!(store.live_nodes(), 3, "root, a, d");
        assert_eq!(store.remove("a").unwrap().topic.as_str(), "a");
        assert_eq!(store.live_nodes(), 3, "a still leads to a/d");
        store.remove("a/d");
        assert_eq!(store.live_nodes(), 1);
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
    }

    #[test]
    fn bytes_count_topic_and_payload() {
        let mut store = RetainedStore::new();
        store.set(msg("ab", "123"));
        store.set(msg("c/d", "4"));
        assert_eq!(store.bytes(), 5 + 4);
        store.set(msg("ab", "1"));
        assert_eq!(store.bytes(), 3 + 4);
        store.remove("c/d");
        assert_eq!(store.bytes(), 3);
    }

    #[test]
    fn exact_filter_matches_only_its_topic() {
        assert_matching("sport/tennis", &["sport/tennis"]);
        assert_matching("sport/tennis/player3", &[]);
        assert_matching("sport/tennis/player1/ranking/x", &[]);
    }

    #[test]
    fn mqtt_4_7_1_2_hash_matches_parent_level() {
        assert_matching(
            "sport/tennis/player1/#",
            &[
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
        );
        assert_matching(
            "sport/#",
            &[
                "sport",
                "sport/",
                "sport/tennis",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
                "sport/tennis/player2",
            ],
        );
    }

    #[test]
    fn mqtt_4_7_1_3_plus_matches_exactly_one_level() {
        assert_matching(
            "sport/tennis/+",
            &["sport/tennis/player1", "sport/tennis/player2"],
        );
        assert_matching("sport/+", &["sport/", "sport/tennis"]);
        assert_matching("sport/+/player1", &["sport/tennis/player1"]);
        assert_matching("a/+/b", &["a//b"]);
    }

    #[test]
    fn mqtt_4_7_1_3_spec_examples_with_leading_slash() {
        assert_matching("+/+", &["/finance", "sport/", "sport/tennis"]);
        assert_matching("/+", &["/finance"]);
        assert_matching("+", &["finance", "sport"]);
    }

    #[test]
    fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
        let everything_else: Vec<&str> = {
            let mut t: Vec<&str> = TOPICS
                .iter()
                .copied()
                .filter(|t| !t.starts_with('$'))
                .collect();
            // Topic-level order: "" before "a", "finance" before "sport".
            t.sort_by(|a, b| a.split('/').cmp(b.split('/')));
            t
        };
        assert_matching("#", &everything_else);
        assert_matching("+/monitor/Clients", &[]);
        assert_matching("+", &["finance", "sport"]);
    }

    #[test]
    fn mqtt_4_7_2_1_dollar_topics_matched_by_literal_dollar_level() {
        assert_matching("$SYS/#", &["$SYS", "$SYS/monitor/Clients"]);
        assert_matching("$SYS/+/Clients", &["$SYS/monitor/Clients"]);
        assert_matching("$SYS", &["$SYS"]);
        // Below the first level `$` is an ordinary character.
        let store = store_of(&["a/$x", "a/$x/y"]);
        assert_eq!(topics(&store.matching("a/+", 0)), ["a/$x"]);
        assert_eq!(topics(&store.matching("a/#", 0)), ["a/$x", "a/$x/y"]);
    }

    #[test]
    fn matching_skips_expired_messages_and_purge_removes_them() {
        let mut store = RetainedStore::new();
        store.set(expiring("a/1", "x", Some(100)));
        store.set(expiring("a/2", "x", Some(200)));
        store.set(expiring("a/3/deep", "x", Some(100)));
        store.set(msg("a/4", "x"));
        assert_eq!(
            topics(&store.matching("a/#", 99)),
            ["a/1", "a/2", "a/3/deep", "a/4"]
        );
        assert_eq!(topics(&store.matching("a/#", 100)), ["a/2", "a/4"]);
        assert_eq!(topics(&store.matching("a/1", 100)), [] as [&str; 0]);
        // Still stored, and visible to get, until purged.
        assert!(store.get("a/1").is_some());
        assert_eq!(store.len(), 4);

        assert_eq!(store.purge_expired(99), 0);
        assert_eq!(store.purge_expired(100), 2);
        assert_eq!(store.len(), 2);
        assert_eq!(store.bytes(), 2 * (3 + 1));
        assert_eq!(store.get("a/1"), None);
        assert_eq!(store.live_nodes(), 4, "root, a, 2, 4: a/3 is pruned");
        assert_eq!(store.purge_expired(1000), 1);
        assert_eq!(topics(&store.iter().cloned().collect::<Vec<_>>()), ["a/4"]);
    }

    #[test]
    fn iter_visits_everything_in_topic_level_order() {
        let store = store_of(&["b", "a/c", "a", "a/b/c"]);
        let all: Vec<Arc<Message>> = store.iter().cloned().collect();
        assert_eq!(topics(&all), ["a", "a/b/c", "a/c", "b"]);
        assert_eq!(RetainedStore::new().iter().count(), 0);
    }

    #[test]
    fn freed_nodes_are_reused() {
        let mut store = RetainedStore::new();
        for round in 0..3 {
            for t in ["a/b/c", "a/b/d", "x/y"] {
                store.set(msg(t, "x"));
            }
            for t in ["a/b/c", "a/b/d", "x/y"] {
                store.remove(t);
            }
            assert_eq!(store.nodes.allocated(), 7, "round {round}");
        }
        assert_eq!(store.live_nodes(), 1);
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        // 32,768 levels, the most a 65,535-byte topic can have.
        let topic = vec!["x"; 32_768].join("/");
        let mut store = RetainedStore::new();
        store.set(expiring(&topic, "p", Some(5)));
        assert_eq!(store.matching("#", 0).len(), 1);
        assert_eq!(store.matching(&topic, 0).len(), 1);
        assert_eq!(store.iter().count(), 1);
        assert_eq!(store.purge_expired(5), 1);
        assert_eq!(store.live_nodes(), 1);
        store.set(msg(&topic, "p"));
        assert!(store.remove(&topic).is_some());
        assert_eq!(store.live_nodes(), 1);
    }

    mod model {
        //! The store against a naive model: a map from topic to message, filtered with a
        //! straightforward matcher.

        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        use crate::test_model::matches;

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
            (prop::collection::vec(level, 1..=4), any::<bool>())
                .prop_map(|(mut levels, hash)| {
                    if hash {
                        *levels.last_mut().unwrap() = "#";
                    }
                    levels.join("/")
                })
                .prop_filter("a filter is not empty", |f| !f.is_empty())
        }

        #[derive(Debug, Clone)]
        enum Op {
            /// An empty payload (length 0) deletes.
            Set {
                topic: String,
                payload_len: usize,
                expires_at: Option<Millis>,
            },
            Remove(String),
            /// Removes the n-th stored topic (mod their number), so that removals hit often.
            RemoveExisting(usize),
            Purge(Millis),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                5 => (topic(), 0..4usize, prop::option::of(0..10u64)).prop_map(
                    |(topic, payload_len, expires_at)| Op::Set { topic, payload_len, expires_at }
                ),
                1 => topic().prop_map(Op::Remove),
                2 => any::<usize>().prop_map(Op::RemoveExisting),
                1 => (0..10u64).prop_map(Op::Purge),
            ]
        }

        /// Topic-level order, which `matching` and `iter` promise.
        fn level_order(messages: &mut [Arc<Message>]) {
            messages.sort_by(|a, b| a.topic.split('/').cmp(b.topic.split('/')));
        }

        fn same(a: &[Arc<Message>], b: &[Arc<Message>]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
        }

        /// Live nodes of a store built afresh from the model: the minimum for its topics.
        fn minimal_nodes(model: &BTreeMap<String, Arc<Message>>) -> usize {
            let mut fresh = RetainedStore::new();
            for m in model.values() {
                fresh.set(m.clone());
            }
            fresh.live_nodes().max(1)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn store_agrees_with_naive_model(
                ops in prop::collection::vec(op(), 1..40),
                filters in prop::collection::vec(filter(), 1..8),
                now in 0..10u64,
            ) {
                let mut store = RetainedStore::new();
                let mut model: BTreeMap<String, Arc<Message>> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Set { topic, payload_len, expires_at } => {
                            let m = expiring(&topic, &"p".repeat(payload_len), expires_at);
                            let expected = if payload_len == 0 {
                                model.remove(&topic)
                            } else {
                                model.insert(topic.clone(), m.clone())
                            };
                            let old = store.set(m);
                            prop_assert!(old.is_some() == expected.is_some());
                            if let (Some(old), Some(expected)) = (old, expected) {
                                prop_assert!(Arc::ptr_eq(&old, &expected));
                            }
                        }
                        Op::Remove(topic) => {
                            let expected = model.remove(&topic);
                            prop_assert_eq!(store.remove(&topic), expected);
                        }
                        Op::RemoveExisting(n) => {
                            if !model.is_empty() {
                                let topic = model.keys().nth(n % model.len()).unwrap().clone();
                                let expected = model.remove(&topic);
                                prop_assert!(expected.is_some());
                                prop_assert_eq!(store.remove(&topic), expected);
                            }
                        }
                        Op::Purge(at) => {
                            let before = model.len();
                            model.retain(|_, m| !m.is_expired(at));
                            prop_assert_eq!(store.purge_expired(at), before - model.len());
                        }
                    }
                    prop_assert_eq!(store.len(), model.len());
                    prop_assert_eq!(store.is_empty(), model.is_empty());
                    let bytes: usize = model.values().map(|m| m.topic.len() + m.payload.len()).sum();
                    prop_assert_eq!(store.bytes(), bytes);
                    prop_assert_eq!(store.live_nodes().max(1), minimal_nodes(&model));
                    for (topic, m) in &model {
                        prop_assert!(Arc::ptr_eq(store.get(topic).unwrap(), m));
                    }
                    let mut all: Vec<_> = model.values().cloned().collect();
                    level_order(&mut all);
                    prop_assert!(same(&store.iter().cloned().collect::<Vec<_>>(), &all));
                    for f in &filters {
                        let mut expected: Vec<_> = model
                            .values()
                            .filter(|m| matches(f, &m.topic) && !m.is_expired(now))
                            .cloned()
                            .collect();
                        level_order(&mut expected);
                        let actual = store.matching(f, now);
                        prop_assert!(
                            same(&actual, &expected),
                            "filter {:?}: {:?} != {:?}",
                            f,
                            actual.iter().map(|m| &*m.topic).collect::<Vec<_>>(),
                            expected.iter().map(|m| &*m.topic).collect::<Vec<_>>()
                        );
                    }
                }
                for topic in model.keys() {
                    prop_assert!(store.remove(topic).is_some());
                }
                prop_assert!(store.is_empty());
                prop_assert_eq!(store.bytes(), 0);
                prop_assert!(store.live_nodes() <= 1, "nodes left: {:?}", store.nodes);
            }
        }
    }
}
