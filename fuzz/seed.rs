//! Writes the presign corpus's seeds: one `PROFILE\nJSON` file per case of tests/data/admit.yaml,
//! and one `YAML\n%%\nJSON` file per example profile. `seed.sh` runs it.

use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/presign");
    std::fs::create_dir_all(&out).expect("the corpus directory");
    let cases: serde_yaml::Mapping =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("tests/data/admit.yaml")).expect("admit.yaml"))
            .expect("admit.yaml is YAML");
    let mut first_request = std::collections::BTreeMap::new();
    let mut written = 0;
    for (name, case) in &cases {
        let (Some(name), Some(profile)) = (name.as_str(), case["profile"].as_str()) else {
            continue;
        };
        let request = serde_json::to_string(&case["request"]).expect("a request as JSON");
        std::fs::write(out.join(name), format!("{profile}\n{request}")).expect("a seed");
        first_request.entry(profile.to_owned()).or_insert(request);
        written += 1;
    }
    for entry in std::fs::read_dir(root.join("policies")).expect("policies/").flatten() {
        let path = entry.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        let yaml = std::fs::read_to_string(&path).expect("a profile");
        let request = first_request.get(&stem).map_or("{}", String::as_str);
        std::fs::write(out.join(format!("inline-{stem}")), format!("{yaml}\n%%\n{request}")).expect("a seed");
        written += 1;
    }
    println!("{written} presign seeds in {}", out.display());
}
