//! Who publishes where and who subscribes to what, for each throughput scenario; and so,
//! which publishers each subscriber must hear from (what the checker holds it to).
//!
//! Every topic is under `bench/<run>/`, a prefix unique to the run, so that a broker's
//! leftovers (retained messages, other runs' clients) never mix in.

use crate::options::Scenario;

/// Filters per `topics` subscriber that match nothing: they give the broker a subscription
/// tree to search, as a real deployment would.
const IDLE_FILTERS: usize = 4;

/// The topics and filters of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The topic of each publisher.
    pub topics: Vec<String>,
    /// The filters of each subscriber.
    pub filters: Vec<Vec<String>>,
    /// The publishers each subscriber's filters match, ascending.
    pub listens_to: Vec<Vec<u32>>,
}

impl Plan {
    /// The plan of `scenario` with `publishers` and `subscribers`, under `bench/<run>/`.
    pub fn new(scenario: Scenario, run: &str, publishers: u32, subscribers: u32) -> Plan {
        let all: Vec<u32> = (0..publishers).collect();
        let root = format!("bench/{run}");
        match scenario {
            Scenario::Fanin | Scenario::Latency => Plan {
                topics: (0..publishers).map(|p| format!("{root}/in/{p}")).collect(),
                filters: vec![vec![format!("{root}/in/#")]; subscribers as usize],
                listens_to: vec![all; subscribers as usize],
            },
            Scenario::Fanout => Plan {
                topics: vec![format!("{root}/out"); publishers as usize],
                filters: vec![vec![format!("{root}/out")]; subscribers as usize],
                listens_to: vec![all; subscribers as usize],
            },
            Scenario::Topics => {
                let topics = (0..publishers)
                    .map(|p| format!("{root}/site/{p}/data"))
                    .collect();
                let mut filters = Vec::new();
                let mut listens_to = Vec::new();
                for s in 0..subscribers {
                    let (matching, hears) = match s % 3 {
                        0 => {
                            let p = (s / 3) % publishers;
                            (format!("{root}/site/{p}/data"), vec![p])
                        }
                        1 => (format!("{root}/site/+/data"), all.clone()),
                        _ => (format!("{root}/#"), all.clone()),
                    };
                    let mut fs = vec![matching];
                    fs.extend((0..IDLE_FILTERS).map(|i| format!("{root}/idle/{s}/{i}/+")));
                    filters.push(fs);
                    listens_to.push(hears);
                }
                Plan {
                    topics,
                    filters,
                    listens_to,
                }
            }
            Scenario::Conns => Plan {
                topics: Vec::new(),
                filters: Vec::new(),
                listens_to: Vec::new(),
            },
        }
    }

    /// The subscribers that hear publisher `p`.
    pub fn listeners_of(&self, p: u32) -> Vec<usize> {
        (0..self.listens_to.len())
            .filter(|&s| self.listens_to[s].contains(&p))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use corvus_core::{ClientId, Match, SubscriptionEntry, SubscriptionTree};

    /// The subscribers (by index) whose filters match `topic`, by the broker's own matching.
    fn matched(plan: &Plan, topic: &str) -> Vec<usize> {
        let mut tree = SubscriptionTree::new();
        for (s, filters) in plan.filters.iter().enumerate() {
            for f in filters {
                let entry = SubscriptionEntry {
                    options: Default::default(),
                    identifier: None,
                };
                tree.subscribe(&ClientId::from(s.to_string().as_str()), f, entry);
            }
        }
        let mut hit = Vec::new();
        tree.for_each_match(topic, |m| {
            if let Match::Client { client, .. } = m {
                hit.push(client.as_ref().parse::<usize>().expect("numbered clients"));
            }
        });
        hit.sort_unstable();
        hit.dedup();
        hit
    }

    #[test]
    fn each_subscriber_listens_to_exactly_the_publishers_its_filters_match() {
        for scenario in [
            Scenario::Fanin,
            Scenario::Fanout,
            Scenario::Topics,
            Scenario::Latency,
        ] {
            let plan = Plan::new(scenario, "r1", 5, 12);
            for (p, topic) in plan.topics.iter().enumerate() {
                assert_eq!(
                    matched(&plan, topic),
                    plan.listeners_of(p as u32),
                    "{scenario:?} publisher {p} on {topic}"
                );
            }
        }
    }

    #[test]
    fn topics_mixes_exact_plus_and_hash_filters() {
        let plan = Plan::new(Scenario::Topics, "r", 8, 24);
        let first: Vec<&str> = plan.filters.iter().map(|f| f[0].as_str()).collect();
        assert_eq!(first.iter().filter(|f| f.ends_with("/#")).count(), 8);
        assert_eq!(first.iter().filter(|f| f.contains("/+/")).count(), 8);
        assert_eq!(plan.filters[0].len(), 1 + IDLE_FILTERS);
        // Exact subscribers spread over the publishers.
        assert_eq!(plan.listens_to[0], vec![0]);
        assert_eq!(plan.listens_to[3], vec![1]);
        assert!((0..8).all(|p| plan.listeners_of(p).len() == 17));
    }
}
