//! The web UI through a real headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`): log in, run a query and read
//! the table, draw the graph and look at its pixels, open an alert's
//! `generatorURL`, silence the alert and see it muted, log out; a label value
//! holding `<script>` shows as text. Screenshots of every page go to
//! `tests/screenshots/` (ignored by git) for a reviewer to look at.
//!
//! A second test checks the UI's guards over plain HTTP: login redirects,
//! the session cookie's attributes, CSRF and role refusals, the
//! Content-Security-Policy and the asset cache headers.

#[path = "ui/support.rs"]
mod support;

use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use support::*;

#[test]
fn ui_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start_collector(dir.path());
    let base = collector.url("");
    let (_driver, driver_port) = start_chromedriver();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let c = browser(driver_port).await;
        flow(&c, &base).await;
        let _ = c.close().await;
        let dark = browser_with(driver_port, &["--force-dark-mode"]).await;
        dark_theme(&dark, &base).await;
        let _ = dark.close().await;
    });
}

/// With the system in dark mode the pages are dark, chart included.
async fn dark_theme(c: &Client, base: &str) {
    c.goto(&format!(
        "{base}/login?next=%2Fgraph%3Fg0.expr%3Dui_wave%26g0.tab%3D0"
    ))
    .await
    .expect("goto");
    c.find(Locator::Css("#token"))
        .await
        .expect("token box")
        .send_keys(ADMIN)
        .await
        .expect("type");
    c.find(Locator::Css("main.login button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_text(c, ".chart-stats", "drawn in").await;
    let bg: Value = c
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .expect("execute");
    assert_eq!(bg, json!("rgb(17, 20, 24)"), "dark background");
    shot(c, "14-graph-dark").await;
}

async fn flow(c: &Client, base: &str) {
    let http = reqwest::Client::new();

    // Logged out: every page sends the browser to the login page.
    c.goto(&format!("{base}/graph")).await.expect("goto");
    wait_text(c, "main.login", "Token").await;
    assert!(
        path_of(c).await.starts_with("/login"),
        "{}",
        path_of(c).await
    );
    shot(c, "01-login").await;
    // A wrong token is refused.
    c.find(Locator::Css("#token"))
        .await
        .expect("token box")
        .send_keys("wrong")
        .await
        .expect("type");
    c.find(Locator::Css("main.login button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_text(c, ".error", "not accepted").await;
    // The admin token opens a session and comes back to /graph.
    c.find(Locator::Css("#token"))
        .await
        .expect("token box")
        .send_keys(ADMIN)
        .await
        .expect("type");
    c.find(Locator::Css("main.login button"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_text(c, ".bar .role", "admin").await;
    assert!(path_of(c).await.starts_with("/graph"));

    // Query, Enter runs it, the table shows the series with the markup label as text.
    let expr = c
        .find(Locator::Css("input.expr"))
        .await
        .expect("expression box");
    expr.send_keys("ui_test_value\u{E007}")
        .await
        .expect("type and Enter");
    let row = wait_text(c, "table.result td.series", "ui_test_value").await;
    assert!(
        row.contains(&format!("note=\"{SCRIPT_LABEL}\"")),
        "row: {row}"
    );
    let value = c
        .find(Locator::Css("table.result td.num"))
        .await
        .expect("value cell")
        .text()
        .await
        .expect("text");
    assert_eq!(value, "10");
    wait_text(c, ".stats", "Result series: 1").await;
    // The label became text, not an element: no script tag outside the page's own.
    let injected: Value = c
        .execute(
            "return Array.from(document.scripts).filter(s => !s.src).length;",
            vec![],
        )
        .await
        .expect("execute");
    assert_eq!(injected, json!(0), "inline script elements found");
    let url = path_of(c).await;
    assert!(
        url.contains("g0.expr=ui_test_value") && url.contains("g0.tab=1"),
        "{url}"
    );
    shot(c, "02-graph-table").await;

    // Completion from what is at the cursor: metric names, then label
    // names inside braces, then that label's values.
    c.goto(&format!("{base}/graph")).await.expect("goto");
    let expr = c
        .find(Locator::Css("input.expr"))
        .await
        .expect("expression box");
    expr.send_keys("histogram_q").await.expect("type");
    wait_option(c, "histogram_quantile(").await;
    expr.clear().await.expect("clear");
    expr.send_keys("ui_test_va").await.expect("type");
    wait_option(c, "ui_test_value").await;
    expr.send_keys("lue{no").await.expect("type");
    wait_option(c, "ui_test_value{note=\"").await;
    expr.send_keys("te=\"").await.expect("type");
    wait_option(c, &format!("ui_test_value{{note=\"{SCRIPT_LABEL}\"")).await;

    // A syntax error is shown at its position.
    c.goto(&format!("{base}/graph?g0.expr=sum(&g0.tab=1"))
        .await
        .expect("goto");
    let err = wait_text(c, ".error", "parse error").await;
    assert!(err.contains("1:5"), "{err}");
    let caret = c
        .find(Locator::Css(".error pre.caret"))
        .await
        .expect("caret")
        .text()
        .await
        .expect("text");
    assert!(caret.ends_with("    ^"), "{caret:?}");
    shot(c, "03-graph-error").await;

    // The graph tab: the chart draws, with the first series' colour on the canvas.
    c.goto(&format!(
        "{base}/graph?g0.expr=ui_wave&g0.tab=1&g0.range_input=1h"
    ))
    .await
    .expect("goto");
    wait_text(c, "table.result td.series", "ui_wave").await;
    // The table sorts by value, up then down.
    for descending in [false, true] {
        c.find(Locator::Css("table.result button.sort[data-col='1']"))
            .await
            .expect("value header")
            .click()
            .await
            .expect("click");
        let values: Value = c
            .execute(
                "return Array.from(document.querySelectorAll('table.result td.num')).map(e => Number(e.textContent));",
                vec![],
            )
            .await
            .expect("execute");
        let values: Vec<f64> = values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect();
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        if descending {
            sorted.reverse();
        }
        assert_eq!(values.len(), 5);
        assert_eq!(values, sorted, "descending: {descending}");
    }
    c.find(Locator::Css("input[name='g0.tab'][value='0']"))
        .await
        .expect("graph tab")
        .click()
        .await
        .expect("click");
    wait_text(c, ".chart-stats", "drawn in").await;
    let stats = c
        .find(Locator::Css(".chart-stats"))
        .await
        .expect("stats")
        .text()
        .await
        .expect("text");
    assert!(stats.starts_with("5 series"), "{stats}");
    let pixels: Value = c.execute(SERIES_PIXELS_JS, vec![]).await.expect("pixels");
    assert!(
        pixels.as_i64().unwrap_or(0) > 100,
        "series pixels: {pixels}"
    );
    let legend = wait_text(c, ".u-legend", "wave=\"4\"").await;
    assert!(legend.contains("ui_wave{wave=\"0\"}"), "{legend}");
    assert!(path_of(c).await.contains("g0.tab=0"));
    // Hovering the plot puts every series' value in the legend.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let values: Value = c.execute(HOVER_JS, vec![]).await.expect("hover");
        let values: Vec<f64> = values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect();
        if values.len() == 5 {
            assert!(
                values.iter().all(|v| (4.0..=16.0).contains(v)),
                "{values:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hover never filled the legend: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shot(c, "04-graph-chart").await;
    let csp: Value = c
        .execute(
            "return [document.documentElement.dataset.cspViolations || '0', document.documentElement.dataset.cspLast || ''];",
            vec![],
        )
        .await
        .expect("csp");
    assert_eq!(csp[0], "0", "the page broke its own CSP: {csp}");
    // The counter works: an inline style attribute is refused and counted.
    c.execute("document.body.setAttribute('style', 'color: red');", vec![])
        .await
        .expect("execute");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: Value = c
            .execute(
                "return document.documentElement.dataset.cspViolations || '0';",
                vec![],
            )
            .await
            .expect("execute");
        if n == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CSP did not refuse an inline style"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Dragging across the middle zooms in on the time axis.
    let span = |v: &Value| -> f64 {
        let f = |k: &str| {
            v[k].as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        f("xMax") - f("xMin")
    };
    let before: Value = c
        .execute(
            "return Object.assign({}, document.querySelector('.chart').dataset);",
            vec![],
        )
        .await
        .expect("dataset");
    // A real mouse drag through WebDriver, across the middle fifth.
    let over = c
        .find(Locator::Css(".chart .u-over"))
        .await
        .expect("plot area");
    let width: Value = c
        .execute(
            "return document.querySelector('.chart .u-over').getBoundingClientRect().width;",
            vec![],
        )
        .await
        .expect("width");
    let fifth = width.as_f64().unwrap_or(1000.0) / 5.0;
    let drag = MouseActions::new("mouse".into())
        .then(PointerAction::MoveToElement {
            element: over,
            duration: None,
            x: -fifth / 2.0,
            y: 0.0,
        })
        .then(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        })
        .then(PointerAction::MoveBy {
            duration: Some(Duration::from_millis(200)),
            x: fifth,
            y: 0.0,
        })
        .then(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    c.perform_actions(drag).await.expect("drag");
    // uPlot applies the selection on its next frame.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after: Value = c
            .execute(
                "return Object.assign({}, document.querySelector('.chart').dataset);",
                vec![],
            )
            .await
            .expect("dataset");
        if span(&after) < span(&before) / 2.0 && span(&after) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "zoom: before {before}, after {after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stacked keeps drawing.
    c.find(Locator::Css("input[name='g0.stacked']"))
        .await
        .expect("stacked")
        .click()
        .await
        .expect("click");
    // The old page also says "drawn in": wait for the new URL first.
    wait_path(c, "g0.stacked=1").await;
    wait_text(c, ".chart-stats", "drawn in").await;
    shot(c, "05-graph-stacked").await;

    // The alert fires; its generatorURL opens /graph with its expression.
    let deadline = Instant::now() + Duration::from_secs(60);
    let generator_url = loop {
        let am: Value = http
            .get(format!("{base}/api/v2/alerts"))
            .bearer_auth(READ)
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("json");
        if let Some(u) = am.as_array().into_iter().flatten().find_map(|a| {
            (a["labels"]["alertname"] == "UiTestHigh")
                .then(|| a["generatorURL"].as_str().map(String::from))
        }) {
            break u.expect("generatorURL");
        }
        assert!(
            Instant::now() < deadline,
            "UiTestHigh never reached alerting: {am}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(generator_url.starts_with(base), "{generator_url}");
    c.goto(&generator_url).await.expect("goto generatorURL");
    let shown = c
        .find(Locator::Css("input.expr"))
        .await
        .expect("expression")
        .prop("value")
        .await
        .expect("value");
    assert_eq!(shown.as_deref(), Some(RULE_EXPR));
    wait_text(c, "table.result td.series", SCRIPT_LABEL).await;
    shot(c, "06-generator-url").await;

    // /alerts lists it firing; the silence button opens a form with a preview.
    c.goto(&format!("{base}/alerts")).await.expect("goto");
    let card = wait_text(c, "article.alert", "UiTestHigh").await;
    assert!(
        card.contains("FIRING") && card.contains(SCRIPT_LABEL),
        "{card}"
    );
    shot(c, "07-alerts").await;
    c.find(Locator::LinkText("Silence"))
        .await
        .expect("silence button")
        .click()
        .await
        .expect("click");
    wait_text(c, "h2", "Would mute 1 alert").await;
    c.find(Locator::Css("#created_by"))
        .await
        .expect("created by")
        .send_keys("ui-test")
        .await
        .expect("type");
    shot(c, "08-silence-new").await;
    c.find(Locator::Css("button.primary"))
        .await
        .expect("create")
        .click()
        .await
        .expect("click");
    wait_text(c, ".notice", "created").await;
    let silence = wait_text(c, "article.silence", "ACTIVE").await;
    assert!(silence.contains("alertname=\"UiTestHigh\""), "{silence}");
    shot(c, "09-silences").await;
    // Muted on /alerts.
    c.goto(&format!("{base}/alerts")).await.expect("goto");
    wait_text(c, "article.alert", "Silenced by").await;
    shot(c, "10-alerts-silenced").await;
    // Expire it from the list.
    c.goto(&format!("{base}/silences")).await.expect("goto");
    c.find(Locator::Css("article.silence form button"))
        .await
        .expect("expire")
        .click()
        .await
        .expect("click");
    wait_text(c, "article.silence", "EXPIRED").await;

    // Acknowledge the alert from its card on /alerts: the card then says
    // who acknowledged it and when.
    c.goto(&format!("{base}/alerts")).await.expect("goto");
    let ack_form = "//article[contains(., 'UiTestHigh')]//form[@class='ack']";
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.find(Locator::XPath(ack_form)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no acknowledge button on UiTestHigh"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.refresh().await.expect("refresh");
    }
    c.find(Locator::XPath(&format!(
        "{ack_form}//input[@name='author']"
    )))
    .await
    .expect("author box")
    .send_keys("ui-test")
    .await
    .expect("type");
    c.find(Locator::XPath(&format!(
        "{ack_form}//input[@name='comment']"
    )))
    .await
    .expect("comment box")
    .send_keys("looking into <it>")
    .await
    .expect("type");
    shot(c, "10b-alerts-ack-form").await;
    c.find(Locator::XPath(&format!("{ack_form}//button")))
        .await
        .expect("acknowledge button")
        .click()
        .await
        .expect("click");
    wait_text(c, ".notice", "Acknowledged").await;
    let card = wait_text(c, "article.alert", "Acknowledged by ui-test").await;
    assert!(card.contains("looking into <it>"), "{card}");
    shot(c, "10c-alerts-acked").await;

    // /incidents lists the episode with the ack; its page shows the
    // timeline, and a note added there joins it.
    c.find(Locator::LinkText("Incidents"))
        .await
        .expect("nav link")
        .click()
        .await
        .expect("click");
    let row = wait_text(c, "table.incidents tr", "UiTestHigh").await;
    assert!(row.contains("OPEN") && row.contains("ui-test"), "{row}");
    let peak = c
        .find(Locator::XPath(
            "//table[contains(@class,'incidents')]//tr[contains(., 'UiTestHigh')]/td[6]",
        ))
        .await
        .expect("peak cell")
        .text()
        .await
        .expect("text");
    assert_eq!(peak, "10", "the rule's value is the peak");
    shot(c, "10d-incidents").await;
    c.find(Locator::LinkText("UiTestHigh"))
        .await
        .expect("incident link")
        .click()
        .await
        .expect("click");
    let timeline = wait_text(c, "ol.timeline", "Acknowledged by ui-test").await;
    assert!(timeline.contains("Started firing"), "{timeline}");
    c.find(Locator::Css("form.note #author"))
        .await
        .expect("note author")
        .send_keys("ui-test")
        .await
        .expect("type");
    c.find(Locator::Css("form.note #text"))
        .await
        .expect("note text")
        .send_keys("replaced the <b>disk</b>")
        .await
        .expect("type");
    c.find(Locator::Css("form.note button"))
        .await
        .expect("add note")
        .click()
        .await
        .expect("click");
    wait_text(
        c,
        "ol.timeline",
        "Note by ui-test: replaced the <b>disk</b>",
    )
    .await;
    shot(c, "10e-incident").await;

    // Anomalies: the rule's series with their scores, each opening a
    // three-panel graph of value, score and alerts.
    c.goto(&format!("{base}/anomalies")).await.expect("goto");
    let deadline = Instant::now() + Duration::from_secs(60);
    while c
        .find(Locator::LinkText("value, score and alerts"))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "no anomaly scores within 60s");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.expect("refresh");
    }
    wait_text(c, "main", "UiWaveAnomaly").await;
    shot(c, "13b-anomalies").await;
    c.find(Locator::LinkText("value, score and alerts"))
        .await
        .expect("series link")
        .click()
        .await
        .expect("click");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let drawn: Value = c
            .execute(
                "return Array.from(document.querySelectorAll('.chart')).map(e => e.dataset.drawn || '');",
                vec![],
            )
            .await
            .expect("execute");
        let drawn: Vec<&str> = drawn
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // Value and score have data; the alerts panel may be empty.
        if drawn.len() == 3 && drawn[0] == "1" && drawn[1] == "1" && !drawn[2].is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "anomaly view not drawn: {drawn:?} at {}",
            path_of(c).await
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let exprs: Value = c
        .execute(
            "return Array.from(document.querySelectorAll('input.expr')).map(e => e.value);",
            vec![],
        )
        .await
        .expect("execute");
    assert!(
        exprs[1]
            .as_str()
            .is_some_and(|e| e.starts_with("vigil_anomaly_score{rule=\"UiWaveAnomaly\"")),
        "{exprs}"
    );
    shot(c, "13c-anomaly-view").await;

    // The other pages render.
    for (path, needle, name) in [
        ("/rules", "anomaly UiWaveAnomaly", "11-rules"),
        ("/status", "Top metrics by series", "12-status"),
        ("/agents", "Targets", "13-agents"),
    ] {
        c.goto(&format!("{base}{path}")).await.expect("goto");
        wait_text(c, "main", needle).await;
        shot(c, name).await;
    }

    // Log out: the session is gone.
    c.find(Locator::Css(".who button"))
        .await
        .expect("log out")
        .click()
        .await
        .expect("click");
    wait_text(c, "main.login", "Token").await;
    c.goto(&format!("{base}/alerts")).await.expect("goto");
    wait_text(c, "main.login", "Token").await;
    assert!(
        path_of(c).await.starts_with("/login?next=%2Falerts"),
        "{}",
        path_of(c).await
    );
}

/// The guards over plain HTTP, without a browser.
#[test]
fn ui_guards_over_http() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = start_collector(dir.path());
    let base = collector.url("");
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // Pages redirect to the login page and carry the CSP.
    let r = client
        .get(format!("{base}/graph?g0.expr=up"))
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Fgraph%3Fg0.expr%3Dup"
    );
    let r = client.get(format!("{base}/login")).send().expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let login_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    let nonce = login_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .expect("login nonce");
    let html = r.text().expect("body");
    assert!(html.contains(&format!("value=\"{nonce}\"")));
    assert!(
        !html.contains("<script>"),
        "inline script on the login page"
    );

    // Login needs the form's nonce, then a token that reads.
    let login = |token: &str, with_nonce: bool| {
        let mut req = client.post(format!("{base}/login")).form(&[
            ("token", token),
            ("csrf", nonce.as_str()),
            ("next", "/alerts"),
        ]);
        if with_nonce {
            req = req.header("cookie", format!("vigil_login={nonce}"));
        }
        req.send().expect("post")
    };
    assert_eq!(login(ADMIN, false).status().as_u16(), 403);
    assert_eq!(login("wrong", true).status().as_u16(), 401);
    let r = login(READ, true);
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/alerts");
    let set = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let session = set.split(';').next().expect("cookie pair").to_string();

    // The session cookie reads pages and the query API, not admin APIs.
    let r = client
        .get(format!("{base}/silences"))
        .header("cookie", &session)
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().expect("body");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("csrf token in the logout form")
        .to_string();
    let r = client
        .get(format!("{base}/api/v1/query?query=ui_test_value"))
        .header("cookie", &session)
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        client
            .get(format!("{base}/api/v1/query?query=up"))
            .send()
            .expect("get")
            .status()
            .as_u16(),
        401
    );
    let silence = json!({"matchers": [{"name": "a", "value": "b", "isRegex": false}],
        "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z", "createdBy": "x", "comment": "y"});
    let r = client
        .post(format!("{base}/api/v2/silences"))
        .header("cookie", &session)
        .json(&silence)
        .send()
        .expect("post");
    assert_eq!(r.status().as_u16(), 401, "admin API reached by cookie");
    // The UI's silence form: the read role is refused, and so is a missing CSRF token.
    let form = |csrf: &str| {
        client
            .post(format!("{base}/silences"))
            .header("cookie", &session)
            .form(&[
                ("csrf", csrf),
                ("matchers", "alertname=\"X\""),
                ("duration", "1h"),
                ("created_by", "t"),
                ("comment", "c"),
            ])
            .send()
            .expect("post")
            .status()
            .as_u16()
    };
    assert_eq!(form(""), 403);
    assert_eq!(form(&csrf), 403, "read role created a silence");
    let silences: Value = client
        .get(format!("{base}/api/v2/silences"))
        .bearer_auth(READ)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(
        silences,
        json!([]),
        "a refused form still created a silence"
    );

    // Scripts may send the API's bearer token instead of a cookie; a bearer
    // request is no forged form post, so it needs no CSRF token.
    let r = client
        .get(format!("{base}/alerts"))
        .bearer_auth(READ)
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.text().expect("body").contains("read (bearer token)"));
    let bearer_form = |token: &str| {
        client
            .post(format!("{base}/silences"))
            .bearer_auth(token)
            .form(&[
                ("matchers", "alertname=\"BearerMade\""),
                ("duration", "1h"),
                ("created_by", "script"),
                ("comment", "made with the admin token"),
            ])
            .send()
            .expect("post")
    };
    assert_eq!(bearer_form(READ).status().as_u16(), 403);
    assert_eq!(bearer_form("wrong").status().as_u16(), 403);
    let r = bearer_form(ADMIN);
    assert_eq!(r.status().as_u16(), 303);
    let silences: Value = client
        .get(format!("{base}/api/v2/silences"))
        .bearer_auth(READ)
        .send()
        .expect("get")
        .json()
        .expect("json");
    assert_eq!(
        silences[0]["matchers"][0]["value"], "BearerMade",
        "{silences}"
    );

    // Adding and removing panels only reshape the URL.
    let r = client
        .get(format!("{base}/graph?g0.expr=up&g0.tab=0&add_panel=1"))
        .header("cookie", &session)
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(
        r.headers()["location"],
        "/graph?g0.expr=up&g0.tab=0&g1.expr=&g1.tab=1"
    );
    let r = client
        .get(format!("{base}/graph?g0.expr=a&g1.expr=b&remove_panel=0"))
        .header("cookie", &session)
        .send()
        .expect("get");
    assert_eq!(r.headers()["location"], "/graph?g0.expr=b&g0.tab=1");

    // Assets: content-hashed names cached for a year; unknown names 404.
    let css = page
        .split("href=\"/ui/static/")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("stylesheet link")
        .to_string();
    let r = client
        .get(format!("{base}/ui/static/{css}"))
        .send()
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .expect("cc")
            .contains("immutable")
    );
    let plain_len = r.bytes().expect("body").len();
    let r = client
        .get(format!("{base}/ui/static/{css}"))
        .header("accept-encoding", "gzip")
        .send()
        .expect("get");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().expect("body");
    assert!(
        gz.starts_with(&[0x1f, 0x8b]) && gz.len() < plain_len,
        "{} vs {plain_len}",
        gz.len()
    );
    assert_eq!(
        client
            .get(format!("{base}/ui/static/vigil.css"))
            .send()
            .expect("get")
            .status()
            .as_u16(),
        404
    );

    // Logout needs the CSRF token; afterwards the cookie opens nothing.
    let logout = |csrf: &str| {
        client
            .post(format!("{base}/logout"))
            .header("cookie", &session)
            .form(&[("csrf", csrf)])
            .send()
            .expect("post")
            .status()
            .as_u16()
    };
    assert_eq!(logout("nope"), 403);
    assert_eq!(logout(&csrf), 303);
    assert_eq!(
        client
            .get(format!("{base}/alerts"))
            .header("cookie", &session)
            .send()
            .expect("get")
            .status()
            .as_u16(),
        303
    );
}
