// camwatch console: refreshes the fleet and camera pages from /api/ without a reload.
// The pages are complete without it (server-rendered); this only keeps them current.
"use strict";
(function () {
  var EVERY_MS = 2000;

  function words(state, kind, silenced) {
    var w = state.replace(/_/g, " ");
    w = state === "drifted" && kind ? w + " (" + kind + ")" : w;
    return silenced ? w + " \u00b7 silenced" : w;
  }
  function match(c) {
    if (c.similarity === null || c.threshold === null) return "match -";
    return "match " + c.similarity.toFixed(3) + " / needs " + c.threshold.toFixed(3);
  }
  function age(s) {
    if (s === null) return "-";
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 172800) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function setState(el, c) {
    el.className = el.className.replace(/\bstate-\S+|\bsilenced\b/g, "").replace(/\s+/g, " ").trim() +
      " state-" + c.state + (c.silenced ? " silenced" : "");
    el.setAttribute("data-state", c.state);
    el.querySelector(".state").textContent = words(c.state, c.kind, c.silenced);
    el.querySelector(".match").textContent = match(c);
    el.querySelector(".age").textContent = age(c.last_check_age);
  }
  function setImage(el, c, img, id) {
    var checked = c.checked_at === null ? "" : String(c.checked_at);
    if (checked && checked !== el.getAttribute("data-checked")) {
      var url = "/api/cameras/" + encodeURIComponent(id) + "/current.jpg?t=" + checked;
      if (img && img.tagName === "IMG") {
        img.src = url;
      } else if (img) {
        var fresh = document.createElement("img");
        fresh.src = url; fresh.alt = "current view of " + id; fresh.width = 320; fresh.height = 180;
        img.parentNode.replaceChild(fresh, img);
      }
      el.setAttribute("data-checked", checked);
    }
  }
  function get(url, done) {
    var r = new XMLHttpRequest();
    r.open("GET", url);
    r.onload = function () { if (r.status === 200) done(JSON.parse(r.responseText)); };
    r.send();
  }

  function fleet(section) {
    var filter = section.getAttribute("data-filter");
    get("/api/cameras", function (f) {
      Object.keys(f.counts).forEach(function (s) {
        var b = document.getElementById("count-" + s);
        if (b) b.textContent = f.counts[s];
      });
      var all = document.getElementById("count-all");
      if (all) all.textContent = f.total;
      f.cameras.forEach(function (c) {   // drifted first: the API's order
        var el = document.getElementById("cam-" + c.id);
        if (!el) return;
        setState(el, c);
        setImage(el, c, el.firstElementChild, c.id);
        if (!filter) section.appendChild(el);
      });
    });
  }
  function camera(box) {
    var id = box.getAttribute("data-id");
    get("/api/cameras/" + encodeURIComponent(id), function (c) {
      setState(box, c);
      var cur = document.getElementById("current") || box.querySelectorAll("figure")[1].firstElementChild;
      var before = box.getAttribute("data-checked");
      setImage(box, c, cur, id);
      var ref = document.getElementById("reference");
      var newest = c.references.reduce(function (a, r) { return a === null || r.id > a ? r.id : a; }, null);
      if (ref && newest !== null && ref.getAttribute("data-ref") !== String(newest)) {
        ref.src = "/api/cameras/" + encodeURIComponent(id) + "/reference.jpg?r=" + newest;
        ref.setAttribute("data-ref", String(newest));
        var map = document.getElementById("scene");   // learned for the old reference: gone with it
        if (map) map.parentNode.removeChild(map);
      }
      var diff = document.getElementById("difference");
      if (diff && box.getAttribute("data-checked") !== before) {
        diff.src = "/api/cameras/" + encodeURIComponent(id) + "/difference.jpg?t=" + c.checked_at;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("fleet");
    var box = document.getElementById("camera");
    if (section) setInterval(function () { fleet(section); }, EVERY_MS);
    if (box) setInterval(function () { camera(box); }, EVERY_MS);
  });
})();
