// The review page: groups from /api/groups, rendered with DOM calls only (file names are
// never parsed as HTML); every change is a POST carrying the session token.
"use strict";

(() => {
  const token = document.querySelector('meta[name="lookalike-token"]').content;
  const SHOTS_SHOWN = 100; // near-duplicate shots listed under the groups, most alike first
  const scanCut = Number(document.body.dataset.minSimilarity);
  const state = {
    cut: scanCut,
    offset: 0,
    limit: Number(document.body.dataset.pageSize),
    total: 0,
    selected: new Map(), // file id -> path, marked for quarantine
    pair: null,
  };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function detail(data, response) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) return data.detail.map((d) => d.msg).join("; ");
    return `${response.status} ${response.statusText}`;
  }

  async function api(path, body) {
    const init = { headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-Lookalike-Token"] = token;
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) throw new Error(detail(data, response));
    return data;
  }

  let messageTimer = null;
  function say(text, kind = "info", ms = kind === "error" ? 12000 : 6000) {
    const box = $("message");
    box.textContent = text;
    box.className = kind;
    box.hidden = false;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => (box.hidden = true), ms);
  }

  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const split = (path) => {
    // "\\" separates folders only in Windows paths; elsewhere it is part of a file name.
    const windows = /^([A-Za-z]:\\|\\\\)/.test(path);
    const cut = (windows ? path.lastIndexOf("\\") : path.lastIndexOf("/")) + 1;
    return [path.slice(cut), path.slice(0, cut)];
  };
  const pathLines = (path) => {
    const [name, folder] = split(path);
    return [el("div", { class: "name", text: name }), folder ? el("div", { class: "folder", text: folder }) : null];
  };
  const size = (bytes) =>
    bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
  const resolution = (f) => (f.width && f.height ? `${f.width}×${f.height}` : "size unknown");
  const STATUS = {
    quarantined: "in quarantine",
    missing: "missing",
    changed: "changed since the scan",
  };

  // -- groups ---------------------------------------------------------------------------

  async function load() {
    const query = new URLSearchParams({
      min_similarity: state.cut.toFixed(4),
      offset: state.offset,
      limit: state.limit,
    });
    try {
      const page = await api(`/api/groups?${query}`);
      if (page.groups.length === 0 && page.offset > 0 && page.total > 0) {
        state.offset = Math.max(0, Math.floor((page.total - 1) / state.limit) * state.limit);
        return load();
      }
      render(page);
    } catch (error) {
      say(error.message, "error");
    }
  }

  function render(page) {
    state.total = page.total;
    const main = $("groups");
    main.replaceChildren(...page.groups.map(groupCard));
    if (page.total === 0) main.append(el("p", { class: "empty", text: "No duplicate groups at this similarity." }));
    const files = page.groups.reduce((n, g) => n + g.members.length, 0);
    $("summary").textContent =
      `${plural(page.total, "group")} at similarity ≥ ${page.min_similarity.toFixed(4)}` +
      (page.total ? `; showing ${page.offset + 1}–${page.offset + page.groups.length} (${files} files)` : "");
    const pages = Math.max(1, Math.ceil(page.total / state.limit));
    $("page-number").textContent = `Page ${Math.floor(page.offset / state.limit) + 1} of ${pages}`;
    $("previous").disabled = page.offset === 0;
    $("next").disabled = page.offset + state.limit >= page.total;
    showSelection();
  }

  function groupCard(group) {
    const keeper = group.members.find((m) => m.keeper);
    const duplicates = group.members.filter((m) => !m.keeper);
    const markable = duplicates.filter((m) => m.file.status === "present");
    return el(
      "article",
      { class: "group", dataset: { number: group.number } },
      el(
        "h2",
        {},
        `Group ${group.number}`,
        el("span", { class: "count", text: ` · ${group.members.length} files` }),
        group.keep_by === "user"
          ? el("span", { class: "badge user", text: "keeper chosen by you" })
          : el("span", { class: "why", text: ` · kept: ${group.keep_reason}` }),
        el("button", {
          type: "button",
          class: "mark-all",
          text: "Mark all duplicates",
          disabled: markable.length === 0,
          onclick: () => {
            markable.forEach((m) => state.selected.set(m.file.id, m.file.path));
            load();
          },
        }),
      ),
      el("div", { class: "members" }, ...group.members.map((m) => memberTile(keeper, duplicates, m))),
    );
  }

  function memberTile(keeper, duplicates, member) {
    const f = member.file;
    const other = member.keeper ? duplicates[0] : member;
    const image = el("img", { src: `/thumb/${f.id}?v=${f.version}`, alt: f.path, loading: "lazy" });
    image.addEventListener("error", () => image.replaceWith(el("span", { class: "no-thumb", text: "no preview" })));
    const present = f.status === "present";
    const actions = member.keeper
      ? el("div", { class: "actions" }, el("span", { class: "badge keeper", text: f.reference ? "keeper · reference" : "keeper" }))
      : f.reference
      ? el("div", { class: "actions" }, el("span", { class: "badge reference", text: "reference: stays" }))
      : el(
          "div",
          { class: "actions" },
          el("button", { type: "button", class: "make-keeper", text: "Make keeper", disabled: !present,
            onclick: () => makeKeeper(f.id) }),
          el("button", { type: "button", class: "not-duplicate", text: "Not a duplicate",
            onclick: () => markNotDuplicate(keeper.file.id, f.id, f.path) }),
          el(
            "label",
            { class: "mark" },
            el("input", { type: "checkbox", class: "mark-quarantine", checked: state.selected.has(f.id),
              disabled: !present && !state.selected.has(f.id),
              onchange: (event) => {
                if (event.target.checked) state.selected.set(f.id, f.path);
                else state.selected.delete(f.id);
                showSelection();
              } }),
            " quarantine",
          ),
        );
    return el(
      "figure",
      { class: `member${member.keeper ? " keeper" : ""} status-${f.status}`, dataset: { file: f.id }, title: f.path },
      el("button", { type: "button", class: "thumb", title: "Compare with the keeper", disabled: !other,
        onclick: () => other && openPair(keeper.file.id, other.file.id) }, image),
      el(
        "figcaption",
        {},
        ...pathLines(f.path),
        el("div", { class: "facts", text: `${size(f.size)} · ${resolution(f)}` }),
        member.keeper ? null : el("div", { class: "similarity", text: member.decided_by === "exact copy"
          ? "exact copy" : `similarity ${member.similarity.toFixed(4)} · ${member.decided_by}` }),
        present ? null : el("div", { class: "status", text: STATUS[f.status] || f.status }),
      ),
      actions,
    );
  }

  function showSelection() {
    const count = state.selected.size;
    $("selection-bar").hidden = count === 0;
    $("selection-count").textContent = `${plural(count, "file")} marked for quarantine`;
  }

  // -- changes ----------------------------------------------------------------------------

  async function makeKeeper(id) {
    try {
      await api("/api/keeper", { file: id });
      state.selected.delete(id);
      say("Keeper changed; later scans keep this file too.");
      closeSheet("pair-view");
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  }

  async function markNotDuplicate(a, b, path) {
    try {
      await api("/api/not-duplicate", { a, b });
      state.selected.delete(b);
      say(`${path}: marked as not a duplicate; later scans keep the two apart.`, "info", 20000);
      $("message").append(" ", el("button", { type: "button", id: "undo-not-duplicate", text: "Undo",
        onclick: () => undoNotDuplicate(a, b, path) }));
      closeSheet("pair-view");
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  }

  async function undoNotDuplicate(a, b, path) {
    try {
      await api("/api/not-duplicate/undo", { a, b });
      say(`${path}: the not-duplicate mark is undone.`);
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  }

  // -- pair view ----------------------------------------------------------------------

  async function overlayInto(box, a, b, side) {
    try {
      const response = await fetch(`/overlay/${a}/${b}/${side}`);
      if (!response.ok) {
        let data = null;
        try {
          data = await response.json();
        } catch (_) {
          data = null;
        }
        throw new Error(detail(data, response));
      }
      const url = URL.createObjectURL(await response.blob());
      const alt = side === "m" ? "the pair with its local-feature matches" : `Grad-CAM overlay (${side})`;
      box.replaceChildren(el("img", { src: url, alt, class: side === "m" ? "matches-image" : "overlay-image" }));
    } catch (error) {
      box.replaceChildren(el("p", { class: "unavailable", text: error.message }));
    }
  }

  // -- near-duplicate shots --------------------------------------------------------------

  async function loadShots() {
    let page;
    try {
      page = await api(`/api/shots?offset=0&limit=${SHOTS_SHOWN}`);
    } catch (error) {
      say(error.message, "error");
      return;
    }
    $("shots").hidden = page.total === 0;
    $("shots-title").textContent = `Near-duplicate shots: ${plural(page.total, "pair")}` +
      (page.total > page.shots.length ? ` (the ${page.shots.length} most alike shown)` : "");
    $("shots-list").replaceChildren(...page.shots.map(shotCard));
  }

  function shotCard(shot) {
    const tile = (f) => {
      const image = el("img", { src: `/thumb/${f.id}?v=${f.version}`, alt: f.path, loading: "lazy" });
      image.addEventListener("error", () => image.replaceWith(el("span", { class: "no-thumb", text: "no preview" })));
      return el(
        "figure",
        { class: `member status-${f.status}`, dataset: { file: f.id }, title: f.path },
        el("button", { type: "button", class: "thumb", title: "Compare the two",
          onclick: () => openPair(shot.a.id, shot.b.id) }, image),
        el("figcaption", {}, ...pathLines(f.path),
          el("div", { class: "facts", text: `${size(f.size)} · ${resolution(f)}` })),
      );
    };
    return el(
      "article",
      { class: "group shot" },
      el("h2", {}, `CNN similarity ${shot.similarity.toFixed(4)}`,
        el("span", { class: "why", text: ` · one scene, a match over ${Math.round(100 * shot.coverage)} %` })),
      el("div", { class: "members" }, tile(shot.a), tile(shot.b)),
    );
  }

  async function openPair(a, b) {
    let pair;
    try {
      pair = await api(`/api/pair?a=${a}&b=${b}`);
    } catch (error) {
      say(error.message, "error");
      return;
    }
    state.pair = [a, b];
    const score = pair.similarity === null ? "no stored similarity" : `similarity ${pair.similarity.toFixed(4)}`;
    $("pair-title").textContent = pair.decided_by ? `${score} · ${pair.decided_by}` : score;
    const boxes = [el("div", { class: "overlay-box", text: "Grad-CAM: computing…" }),
      el("div", { class: "overlay-box", text: "Grad-CAM: computing…" }),
      el("div", { class: "matches-box", text: "what decided: computing…" })];
    const column = (f, role, box) =>
      el(
        "div",
        { class: "side" },
        el("h3", { text: role }),
        el("img", { src: `/image/${f.id}?v=${f.version}`, alt: f.path, class: "large" }),
        box,
        el("div", { class: "path", text: f.path }),
        el("div", { class: "facts", text: `${size(f.size)} · ${resolution(f)}` }),
        f.status === "present" ? null : el("div", { class: "status", text: STATUS[f.status] || f.status }),
      );
    $("pair-body").replaceChildren(
      column(pair.a, pair.shot ? "Photo A" : "Keeper", boxes[0]),
      column(pair.b, pair.shot ? "Photo B" : "Duplicate", boxes[1]),
      boxes[2],
      pair.shot ? null : el(
        "p",
        { class: "buttons" },
        el("button", { type: "button", class: "make-keeper", text: "Make the duplicate the keeper",
          disabled: pair.b.status !== "present", onclick: () => makeKeeper(b) }),
        el("button", { type: "button", class: "not-duplicate", text: "Not duplicates",
          onclick: () => markNotDuplicate(a, b, pair.b.path) }),
      ),
    );
    openSheet("pair-view");
    await overlayInto(boxes[0], a, b, "a");
    if (state.pair && state.pair[0] === a && state.pair[1] === b) await overlayInto(boxes[1], a, b, "b");
    if (state.pair && state.pair[0] === a && state.pair[1] === b) await overlayInto(boxes[2], a, b, "m");
  }

  // -- quarantine and restore --------------------------------------------------------------

  function fileList(title, entries, line) {
    if (!entries.length) return null;
    return el("div", { class: "list" }, el("h3", { text: title }), el("ul", {}, ...entries.map((e) => el("li", {}, ...line(e)))));
  }

  let preview = null;
  async function reviewQuarantine() {
    try {
      const data = await api("/api/quarantine/preview", { files: [...state.selected.keys()], min_similarity: state.cut });
      preview = data.preview;
      $("confirm-body").replaceChildren(
        el("p", { class: "count", text: `${plural(data.done.length, "file")} will be moved.` }),
        fileList("Moved", data.done, (m) => [el("code", { text: m.src }), " → ", el("code", { text: m.dst })]),
        fileList("Left as they are", data.skipped, (e) => [el("code", { text: e.path }), `: ${e.reason}`]),
        fileList("Not taken", data.refused, (e) => [el("code", { text: e.path }), `: ${e.reason}`]),
      );
      const button = $("confirm-quarantine");
      button.textContent = `Move ${plural(data.done.length, "file")}`;
      button.disabled = data.done.length === 0;
      openSheet("confirm-view");
    } catch (error) {
      say(error.message, "error");
    }
  }

  async function confirmQuarantine() {
    $("confirm-quarantine").disabled = true;
    try {
      const outcome = await api("/api/quarantine", { preview });
      preview = null;
      state.selected.clear();
      closeSheet("confirm-view");
      say(
        `Moved ${plural(outcome.done.length, "file")} (manifest ${outcome.manifest}); ` +
          (outcome.skipped.length ? `${outcome.skipped.length} left as they were. ` : "") +
          "Restore them from Quarantine folder….",
        outcome.skipped.length ? "error" : "info",
      );
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  }

  async function showQuarantine() {
    try {
      const data = await api("/api/manifests");
      const rows = data.manifests.map((m) =>
        el(
          "li",
          { dataset: { manifest: m.name } },
          el("code", { text: m.name }),
          ` · ${plural(m.files, "file")}, ${m.in_quarantine} still in quarantine `,
          el("button", { type: "button", class: "restore", text: "Restore", disabled: m.in_quarantine === 0,
            onclick: () => restore(m.name) }),
        ),
      );
      $("manifests").replaceChildren(rows.length ? el("ul", {}, ...rows) : el("p", { text: "Nothing has been quarantined here yet." }));
      openSheet("quarantine-view");
    } catch (error) {
      say(error.message, "error");
    }
  }

  async function restore(name) {
    try {
      const outcome = await api("/api/restore", { manifest: name });
      say(
        `Restored ${plural(outcome.done.length, "file")}` +
          (outcome.skipped.length ? `; ${outcome.skipped.length} left: ${outcome.skipped.map((e) => `${e.path} (${e.reason})`).join(", ")}` : "."),
        outcome.skipped.length ? "error" : "info",
      );
      await showQuarantine();
      await load();
    } catch (error) {
      say(error.message, "error");
    }
  }

  // -- sheets and controls ----------------------------------------------------------------

  function openSheet(id) {
    $(id).hidden = false;
    $(id).querySelector(".close").focus();
  }

  function closeSheet(id) {
    $(id).hidden = true;
    if (id === "pair-view") {
      state.pair = null;
      $("pair-body").querySelectorAll("img").forEach((img) => img.src.startsWith("blob:") && URL.revokeObjectURL(img.src));
    }
  }

  document.querySelectorAll("[data-close]").forEach((button) =>
    button.addEventListener("click", () => closeSheet(button.dataset.close)),
  );
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") document.querySelectorAll(".sheet:not([hidden])").forEach((s) => closeSheet(s.id));
  });

  let slideTimer = null;
  $("cutoff").addEventListener("input", (event) => {
    const value = Number(event.target.value);
    $("cutoff-value").textContent = value.toFixed(4);
    clearTimeout(slideTimer);
    slideTimer = setTimeout(() => {
      state.cut = value;
      state.offset = 0;
      load();
    }, 200);
  });
  $("reset-cutoff").addEventListener("click", () => {
    $("cutoff").value = scanCut;
    $("cutoff").dispatchEvent(new Event("input"));
  });
  $("page-size").addEventListener("change", (event) => {
    state.limit = Number(event.target.value);
    state.offset = 0;
    load();
  });
  $("previous").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - state.limit);
    load().then(() => window.scrollTo(0, 0));
  });
  $("next").addEventListener("click", () => {
    state.offset += state.limit;
    load().then(() => window.scrollTo(0, 0));
  });
  $("clear-selection").addEventListener("click", () => {
    state.selected.clear();
    load();
  });
  $("message").addEventListener("click", () => ($("message").hidden = true));
  $("review-quarantine").addEventListener("click", reviewQuarantine);
  $("confirm-quarantine").addEventListener("click", confirmQuarantine);
  $("show-quarantine").addEventListener("click", showQuarantine);

  load();
  loadShots();
})();
