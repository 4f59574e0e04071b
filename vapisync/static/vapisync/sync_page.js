/* Vapi Sync admin page: live progress of a run, and the auto-refresh toggle.
 * No framework; reads the staff-only JSON endpoints under /admin/vapisync/sync/. */
(function () {
    "use strict";

    const KEY_ON = "vapisync.autoRefresh";
    const KEY_SECONDS = "vapisync.autoRefreshSeconds";
    let submitting = false;
    let following = null;

    function store(key, value) {
        try {
            if (value === undefined) { return window.localStorage.getItem(key); }
            window.localStorage.setItem(key, value);
        } catch (e) { /* storage disabled: the toggle just is not remembered */ }
        return null;
    }

    async function getJSON(url) {
        const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
    }

    // --- Progress ---------------------------------------------------------------------
    function showProgress(box, run) {
        if (!box) { return; }
        box.hidden = false;
        const what = box.querySelector(".vs-progress-what");
        const phase = box.querySelector(".vs-progress-phase");
        const bar = box.querySelector(".vs-progress-bar");
        const count = box.querySelector(".vs-progress-count");
        const eta = box.querySelector(".vs-progress-eta");
        const progress = (run && run.progress) || {};
        if (what) { what.textContent = run ? "Run " + run.id + ": " + run.what : "Starting…"; }
        if (phase) { phase.textContent = progress.phase || (run ? run.status_display : "waiting for the server"); }
        if (bar) {
            if (progress.total) {
                bar.max = progress.total;
                bar.value = Math.min(progress.done || 0, progress.total);
            } else {
                bar.removeAttribute("value");  // indeterminate
            }
        }
        if (count) {
            let text = progress.total ? (progress.done || 0) + " / " + progress.total : "";
            if (progress.percent !== undefined) { text += " (" + Math.floor(progress.percent) + "%)"; }
            if (progress.checked) { text += (text ? " · " : "") + progress.checked + " checked"; }
            count.textContent = text;
        }
        if (eta) { eta.textContent = timeLeft(progress.eta_seconds); }
    }

    function timeLeft(seconds) {
        if (seconds === undefined || seconds === null || seconds <= 0) { return ""; }
        if (seconds < 60) { return "· about " + Math.max(1, Math.round(seconds)) + " s left"; }
        return "· about " + Math.round(seconds / 60) + " min left";
    }

    function followRun(box, url, onDone) {
        if (following === url) { return; }
        following = url;
        const tick = async function () {
            try {
                const run = await getJSON(url);
                showProgress(box, run);
                if (!run.active) { onDone(run); return; }
            } catch (e) { /* transient: try again */ }
            window.setTimeout(tick, 1000);
        };
        tick();
    }

    function runUrl(main, id) {
        return main.dataset.runJson.replace(/0\.json$/, id + ".json");
    }

    // While a button's POST is running in this request, show the run's progress.
    function watchActiveRun(main, box) {
        const tick = async function () {
            try {
                const data = await getJSON(main.dataset.activeJson);
                showProgress(box, data.run);
            } catch (e) { /* keep waiting */ }
            window.setTimeout(tick, 1000);
        };
        window.setTimeout(tick, 400);
    }

    function setUpRunForms(main, box) {
        document.querySelectorAll("form.vs-run-form").forEach(function (form) {
            form.addEventListener("submit", function (event) {
                if (submitting) { event.preventDefault(); return; }
                submitting = true;
                const clicked = form.querySelector("input[type=submit]");
                document.querySelectorAll("form.vs-run-form input[type=submit]").forEach(function (button) {
                    window.setTimeout(function () { button.disabled = true; }, 0);
                });
                if (clicked) { clicked.classList.add("vs-busy"); }
                showProgress(box, null);
                watchActiveRun(main, box);
            });
        });
    }

    // --- Auto-refresh ---------------------------------------------------------------------
    function setUpAutoRefresh(main, box) {
        const toggle = document.getElementById("vs-autorefresh");
        const interval = document.getElementById("vs-interval");
        const state = document.getElementById("vs-refresh-state");
        if (!toggle || !interval) { return; }
        let timer = null;
        toggle.checked = store(KEY_ON) === "1";
        const seconds = store(KEY_SECONDS);
        if (seconds && interval.querySelector('option[value="' + seconds + '"]')) { interval.value = seconds; }

        async function refresh() {
            if (submitting || document.hidden) { return; }
            try {
                const response = await fetch(window.location.href, {credentials: "same-origin"});
                if (!response.ok) { throw new Error("HTTP " + response.status); }
                const doc = new DOMParser().parseFromString(await response.text(), "text/html");
                document.querySelectorAll("[data-refresh]").forEach(function (element) {
                    const fresh = doc.querySelector('[data-refresh="' + element.dataset.refresh + '"]');
                    if (fresh) { element.replaceWith(fresh); }
                });
                const freshBox = doc.getElementById("progress");
                if (freshBox && freshBox.dataset.runId) { follow(main, box, freshBox.dataset.runId); }
                if (state) { state.textContent = "On. Last refreshed at " + new Date().toLocaleTimeString() + "."; }
            } catch (e) {
                if (state) { state.textContent = "On, but the last refresh failed (" + e.message + "); retrying."; }
            }
        }

        function schedule() {
            window.clearInterval(timer);
            store(KEY_ON, toggle.checked ? "1" : "0");
            store(KEY_SECONDS, interval.value);
            if (toggle.checked) {
                timer = window.setInterval(refresh, Number(interval.value) * 1000);
                if (state) { state.textContent = "On: every " + interval.options[interval.selectedIndex].text + "."; }
            } else if (state) {
                state.textContent = "Off. The choice is remembered in this browser.";
            }
        }

        toggle.addEventListener("change", schedule);
        interval.addEventListener("change", schedule);
        schedule();
    }

    function follow(main, box, id) {
        followRun(box, runUrl(main, id), function (run) {
            const target = new URL(run.page_url + "#results", window.location.href);
            if (target.pathname + target.search === window.location.pathname + window.location.search) {
                // Already on the run's page (a button lands on ?run=<id>#progress): only a reload shows its results.
                window.history.replaceState(null, "", target.href);
                window.location.reload();
            } else {
                window.location.assign(target.href);
            }
        });
    }

    document.addEventListener("DOMContentLoaded", function () {
        const box = document.getElementById("progress");
        const main = document.querySelector(".vs-main");
        if (!main) {
            // A run's own page: follow it, then reload to show its changes.
            if (box && box.dataset.runJson) {
                followRun(box, box.dataset.runJson, function () { window.location.reload(); });
            }
            return;
        }
        setUpRunForms(main, box);
        setUpAutoRefresh(main, box);
        if (box && box.dataset.runId) { follow(main, box, box.dataset.runId); }
    });
}());
