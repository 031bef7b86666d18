//! The cost of `?filter=` on a large list answer, next to the work every unfiltered read
//! does anyway: parse the list's JSON and serialize it again.
//!
//! The list: 10,000 service instances as `/v1/catalog/service/<name>` answers them.

use criterion::{Criterion, criterion_group, criterion_main};
use fsmhost_filter::{Filter, filter_list};
use serde_json::{Value, json};
use std::hint::black_box;

fn instance(n: usize) -> Value {
    let env = ["prod", "qa", "dev"][n % 3];
    let version = format!("v{}", n % 5);
    json!({
        "ID": format!("{:08x}-0000-4000-8000-{:012x}", n / 50, n / 50),
        "Node": format!("node-{}", n / 50),
        "Address": format!("10.0.{}.{}", (n / 50) / 256, (n / 50) % 256),
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": format!("10.0.{}.{}", (n / 50) / 256, (n / 50) % 256), "wan": "198.18.0.1"},
        "NodeMeta": {"consul-network-segment": "", "os": if n.is_multiple_of(2) { "linux" } else { "windows" }},
        "ServiceKind": "",
        "ServiceID": format!("web-{n}"),
        "ServiceName": "web",
        "ServiceTags": [env, version, "http"],
        "ServiceAddress": "",
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": {"env": env, "version": version},
        "ServicePort": 8000 + (n % 100),
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": false,
        "ServiceProxy": {"MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "ServiceLocality": null,
        "CreateIndex": 10 + n,
        "ModifyIndex": 10 + n
    })
}

fn bench(c: &mut Criterion) {
    let list = Value::Array((0..10_000).map(instance).collect());
    let bytes = serde_json::to_vec(&list).unwrap_or_default();
    let filter = Filter::parse(r#"ServiceMeta.env == prod and ServiceTags contains "v1""#)
        .unwrap_or_else(|e| panic!("{e}"));
    let kept = filter_list(&filter, list.clone());
    println!(
        "list: {} instances, {} bytes of JSON; the filter keeps {}",
        10_000,
        bytes.len(),
        kept.as_array().map_or(0, Vec::len)
    );

    let mut group = c.benchmark_group("catalog_service_10k");
    group.bench_function("unfiltered_read: parse + serialize", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&bytes)).unwrap_or_default();
            black_box(serde_json::to_vec(&v).unwrap_or_default())
        })
    });
    group.bench_function("filter_list (clone of the parsed list included)", |b| {
        b.iter(|| black_box(filter_list(&filter, black_box(list.clone()))))
    });
    group.bench_function("clone of the parsed list alone", |b| {
        b.iter(|| black_box(list.clone()))
    });
    group.bench_function("matches over the list (no clone, no move)", |b| {
        b.iter(|| {
            list.as_array().map_or(0, |items| {
                items.iter().filter(|i| filter.matches(i)).count()
            })
        })
    });
    group.bench_function("Filter::parse", |b| {
        b.iter(|| {
            Filter::parse(black_box(
                r#"ServiceMeta.env == prod and ServiceTags contains "v1""#,
            ))
            .is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
