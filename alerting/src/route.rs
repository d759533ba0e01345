//! The routing tree, flattened: each node carries its inherited options, so
//! matching an alert yields the routes (receiver, grouping, timing) it goes
//! to, exactly as Alertmanager's `Route.Match` does (depth first; a child
//! that matches stops its siblings unless it says `continue`; a node whose
//! children all fail to match is itself the match).

use std::time::Duration;

use vigil_wire::Matcher;

use crate::config::{RepeatBackoff, RouteConfig};
use crate::matchers::{LabelSet, matchers_string, matches_all};

/// Options of one route after inheritance.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: usize,
    pub parent: Option<usize>,
    pub receiver: String,
    pub matchers: Vec<Matcher>,
    pub group_by: Vec<String>,
    pub group_by_all: bool,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub repeat_backoff: Option<RepeatBackoff>,
    pub mute_time_intervals: Vec<String>,
    pub active_time_intervals: Vec<String>,
    pub continue_matching: bool,
    pub children: Vec<usize>,
    /// Alertmanager's `Route.Key()`: parent key, `/`, own matchers.
    pub key: String,
}

/// The whole tree; node 0 is the root.
#[derive(Debug, Clone)]
pub struct RouteTree {
    pub nodes: Vec<Route>,
}

impl RouteTree {
    /// Builds the tree from a validated configuration.
    pub fn new(root: &RouteConfig) -> Self {
        let mut tree = RouteTree { nodes: Vec::new() };
        let defaults = Route {
            id: 0,
            parent: None,
            receiver: String::new(),
            matchers: Vec::new(),
            group_by: Vec::new(),
            group_by_all: false,
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            repeat_backoff: None,
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
            continue_matching: false,
            children: Vec::new(),
            key: String::new(),
        };
        tree.add(root, &defaults, None);
        tree
    }

    fn add(&mut self, cfg: &RouteConfig, parent: &Route, parent_id: Option<usize>) -> usize {
        let id = self.nodes.len();
        let matchers = cfg.all_matchers();
        let own = matchers_string(&matchers);
        let key = match parent_id {
            Some(_) => format!("{}/{own}", parent.key),
            None => own,
        };
        let (group_by, group_by_all) = match &cfg.group_by {
            Some(g) if g.value.iter().any(|n| n == "...") => (Vec::new(), true),
            Some(g) => (g.value.clone(), false),
            None => (parent.group_by.clone(), parent.group_by_all),
        };
        let node = Route {
            id,
            parent: parent_id,
            receiver: cfg
                .receiver
                .as_ref()
                .map(|r| r.value.clone())
                .unwrap_or_else(|| parent.receiver.clone()),
            matchers,
            group_by,
            group_by_all,
            group_wait: cfg
                .group_wait
                .as_ref()
                .map(|d| d.value.0)
                .unwrap_or(parent.group_wait),
            group_interval: cfg
                .group_interval
                .as_ref()
                .map(|d| d.value.0)
                .unwrap_or(parent.group_interval),
            repeat_interval: cfg
                .repeat_interval
                .as_ref()
                .map(|d| d.value.0)
                .unwrap_or(parent.repeat_interval),
            repeat_backoff: cfg
                .vigil_repeat_backoff
                .clone()
                .or_else(|| parent.repeat_backoff.clone()),
            mute_time_intervals: cfg
                .mute_time_intervals
                .iter()
                .map(|s| s.value.clone())
                .collect(),
            active_time_intervals: cfg
                .active_time_intervals
                .iter()
                .map(|s| s.value.clone())
                .collect(),
            continue_matching: cfg.continue_matching,
            children: Vec::new(),
            key,
        };
        self.nodes.push(node);
        for child in &cfg.routes {
            let snapshot = self.nodes[id].clone();
            let cid = self.add(child, &snapshot, Some(id));
            self.nodes[id].children.push(cid);
        }
        id
    }

    /// The routes an alert with these labels is delivered through.
    pub fn matching(&self, labels: &LabelSet) -> Vec<usize> {
        let mut out = Vec::new();
        self.match_node(0, labels, &mut out);
        out
    }

    fn match_node(&self, id: usize, labels: &LabelSet, out: &mut Vec<usize>) -> bool {
        let node = &self.nodes[id];
        if !matches_all(&node.matchers, labels) {
            return false;
        }
        let before = out.len();
        for &c in &node.children {
            let matched = self.match_node(c, labels, out);
            if matched && !self.nodes[c].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(id);
        }
        true
    }

    /// The labels an alert is grouped by on a route.
    pub fn group_labels(&self, route: usize, labels: &LabelSet) -> LabelSet {
        let node = &self.nodes[route];
        if node.group_by_all {
            return labels.clone();
        }
        node.group_by
            .iter()
            .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
            .collect()
    }

    /// Receiver names in tree order (for `/api/v2/alerts` `receivers`).
    pub fn receivers_for(&self, labels: &LabelSet) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for r in self.matching(labels) {
            let n = &self.nodes[r].receiver;
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names
    }
}

/// Alertmanager's group key: `<route key>:<group labels>`.
pub fn group_key(route_key: &str, group_labels: &LabelSet) -> String {
    format!(
        "{route_key}:{}",
        crate::matchers::labelset_string(group_labels)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(yaml: &str) -> RouteTree {
        let cfg: RouteConfig = serde_saphyr::from_str(yaml).expect("valid route");
        RouteTree::new(&cfg)
    }

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TREE: &str = r#"
receiver: default
group_by: [alertname]
routes:
  - matchers: ['severity="critical"']
    receiver: pager
    group_wait: 1s
    continue: true
    routes:
      - match: {team: db}
        receiver: dba
  - match_re: {severity: "warn.*"}
    receiver: chat
    group_by: ['...']
  - matchers: ['team="ops"']
    receiver: ops
"#;

    #[test]
    fn first_match_wins_unless_continue() {
        let t = tree(TREE);
        let crit = t.matching(&ls(&[
            ("alertname", "A"),
            ("severity", "critical"),
            ("team", "ops"),
        ]));
        let recv: Vec<&str> = crit.iter().map(|r| t.nodes[*r].receiver.as_str()).collect();
        assert_eq!(recv, vec!["pager", "ops"]);
        let db = t.matching(&ls(&[("severity", "critical"), ("team", "db")]));
        assert_eq!(t.nodes[db[0]].receiver, "dba");
        let warn = t.matching(&ls(&[("severity", "warning"), ("team", "ops")]));
        assert_eq!(warn.len(), 1);
        assert_eq!(t.nodes[warn[0]].receiver, "chat");
        let none = t.matching(&ls(&[("severity", "info")]));
        assert_eq!(t.nodes[none[0]].receiver, "default");
    }

    #[test]
    fn options_inherit() {
        let t = tree(TREE);
        let db = t.matching(&ls(&[("severity", "critical"), ("team", "db")]))[0];
        assert_eq!(t.nodes[db].group_wait, Duration::from_secs(1));
        assert_eq!(t.nodes[db].group_by, vec!["alertname".to_string()]);
        assert_eq!(t.nodes[db].repeat_interval, Duration::from_secs(4 * 3600));
    }

    #[test]
    fn group_keys_like_alertmanager() {
        let t = tree(TREE);
        let labels = ls(&[("alertname", "A"), ("severity", "critical"), ("team", "db")]);
        let r = t.matching(&labels)[0];
        assert_eq!(t.nodes[r].key, r#"{}/{severity="critical"}/{team="db"}"#);
        let gl = t.group_labels(r, &labels);
        assert_eq!(
            group_key(&t.nodes[r].key, &gl),
            r#"{}/{severity="critical"}/{team="db"}:{alertname="A"}"#
        );
        let w = ls(&[("alertname", "B"), ("severity", "warning")]);
        let r = t.matching(&w)[0];
        assert_eq!(t.nodes[r].key, r#"{}/{severity=~"warn.*"}"#);
        assert_eq!(t.group_labels(r, &w), w);
    }
}
