//! EC2's answers are XML (the Query protocol); this reads them into a small
//! owned tree, so the rest of the adapter (and the tests) can walk answers
//! without holding the text they came from.

/// One XML element: its local name (namespaces dropped: EC2 puts every
/// element in one namespace), its text and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Xml {
    pub name: String,
    pub text: String,
    pub children: Vec<Xml>,
}

impl Xml {
    /// Parses a document into its root element.
    pub fn parse(doc: &str) -> Result<Xml, String> {
        let d = roxmltree::Document::parse(doc).map_err(|e| e.to_string())?;
        Ok(Self::from_node(d.root_element()))
    }

    fn from_node(n: roxmltree::Node<'_, '_>) -> Xml {
        let mut text = String::new();
        let mut children = Vec::new();
        for c in n.children() {
            if c.is_element() {
                children.push(Self::from_node(c));
            } else if c.is_text() {
                text.push_str(c.text().unwrap_or(""));
            }
        }
        Xml {
            name: n.tag_name().name().to_string(),
            text: text.trim().to_string(),
            children,
        }
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Xml> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The element at a path of child names (`["instancesSet", "item"]`).
    pub fn at(&self, path: &[&str]) -> Option<&Xml> {
        path.iter().try_fold(self, |x, p| x.child(p))
    }

    /// The text of the child at `path`, if it is there and not empty.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path)
            .map(|x| x.text.as_str())
            .filter(|s| !s.is_empty())
    }

    /// The `item`s of the list at `path`: EC2 writes every list as
    /// `<listName><item>..</item>..</listName>`. An absent list is empty.
    pub fn items(&self, path: &[&str]) -> Vec<&Xml> {
        self.at(path)
            .map(|l| l.children.iter().filter(|c| c.name == "item").collect())
            .unwrap_or_default()
    }

    /// The value of the tag `key` in this element's `tagSet`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.items(&["tagSet"])
            .into_iter()
            .find(|t| t.text_at(&["key"]) == Some(key))
            .and_then(|t| t.text_at(&["value"]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_tags_and_paths_ignoring_the_namespace() {
        let x = Xml::parse(
            r#"<?xml version="1.0"?><DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
            <reservationSet><item><instancesSet><item><instanceId>i-1</instanceId>
            <instanceState><name>running</name></instanceState>
            <tagSet><item><key>a</key><value>b</value></item></tagSet></item></instancesSet></item></reservationSet>
            </DescribeInstancesResponse>"#,
        )
        .unwrap();
        assert_eq!(x.name, "DescribeInstancesResponse");
        let r = x.items(&["reservationSet"]);
        let i = r[0].items(&["instancesSet"]);
        assert_eq!(i[0].text_at(&["instanceId"]), Some("i-1"));
        assert_eq!(i[0].text_at(&["instanceState", "name"]), Some("running"));
        assert_eq!(i[0].tag("a"), Some("b"));
        assert_eq!(i[0].tag("c"), None);
        assert!(x.items(&["nothing"]).is_empty());
        assert!(Xml::parse("<a>").is_err());
    }
}
