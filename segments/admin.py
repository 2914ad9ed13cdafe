"""Admin of segments: a rule editor with live validation and preview, members, size over time.

The definition is JSON edited in a textarea; a few lines of vanilla JS post it to the ``validate``
view as you type, which answers with the same field-path messages as the API and, when valid, the
size and a sample of members (``segment_preview``). Saving goes through the services.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import F
from django.http import JsonResponse
from django.templatetags.static import static
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from profiles.admin.panels import PanelContent, register_profile_panel
from segments import (
    admin_clustering,  # noqa: F401  (clustering runs and proposals)
    selectors,
    services,
)
from segments.builder import builder_catalog, definition_summary, definition_warnings, readable_order
from segments.examples import EXAMPLES as ISSUE_EXAMPLES
from segments.models import Segment, SegmentKind, SegmentMembership, SegmentSize
from segments.rules.validate import definition_errors

EXAMPLES = {
    **dict(ISSUE_EXAMPLES.values()),  # title → definition
    "Marketing-consenting buyers": {"all": [{"event": "Order Completed"}, {"consent": "marketing"}]},
}


class TypedJSON(str):
    """A definition's text as the expert typed it, shown verbatim in the JSON view."""


class DefinitionWidget(forms.Textarea):
    def __init__(self) -> None:
        super().__init__(attrs={"rows": 18, "cols": 90, "style": "font-family: monospace", "class": "seg-definition"})

    def format_value(self, value):
        if isinstance(value, TypedJSON):
            return str(value)
        if isinstance(value, str):
            try:
                value = json.loads(value)  # parsed JSON keeps the typed key order
            except ValueError:
                return value
        return json.dumps(value, indent=2, ensure_ascii=False) if value is not None else ""


class DefinitionField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, TypedJSON):
            return value
        return super().prepare_value(value)

    def has_changed(self, initial, data):
        if isinstance(initial, TypedJSON):
            initial = json.loads(initial)
        return super().has_changed(initial, data)


class SegmentForm(forms.ModelForm):
    definition = DefinitionField(
        required=False,
        widget=DefinitionWidget(),
        help_text="Conditions as JSON (docs/segments.md). Checked and previewed as you type.",
    )

    class Meta:
        model = Segment
        fields = ["name", "slug", "description", "status", "definition"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        segment = self.instance
        if segment.pk and segment.definition is not None:
            typed = segment.typed_definition
            if segment.definition_text and typed is not segment.definition:
                self.initial["definition"] = TypedJSON(segment.definition_text)  # as typed, verbatim
            else:
                self.initial["definition"] = readable_order(segment.definition)  # jsonb's order, made readable

    def clean(self):
        data = super().clean()
        if self.instance.pk and self.instance.kind != SegmentKind.RULE:
            data["definition"] = self.instance.definition
            return data
        if "definition" in self.errors:
            return data
        errors = definition_errors(data.get("definition"), slug=data.get("slug") or self.instance.slug or None)
        if errors:
            self.add_error("definition", [f"{path}: {msg}" for path, msgs in errors.items() for msg in msgs])
        return data


def size_chart_svg(sizes: list[tuple], width: int = 640, height: int = 160) -> str:
    """An inline SVG line chart of (at, size) samples (server-side, no JS). One sample is drawn as a
    point with its figure and date, never an empty box."""
    if not sizes:
        return "<p>No size recorded yet (the first refresh records one).</p>"
    pad = 30
    t0, t1 = sizes[0][0].timestamp(), sizes[-1][0].timestamp()
    top = max(s for _, s in sizes) or 1
    span = (t1 - t0) or 1

    def xy(at, size) -> tuple[float, float]:
        x = pad + (at.timestamp() - t0) / span * (width - 2 * pad) if len(sizes) > 1 else width / 2
        y = height - pad - size / top * (height - 2 * pad)
        return x, y

    points = [xy(at, s) for at, s in sizes]
    last_x, last_y = points[-1]
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    if len(points) > 1:
        line = f'<polyline fill="none" stroke="#417690" stroke-width="2" points="{coords}"/>'
    else:
        line = (
            f'<line x1="{pad}" y1="{last_y:.1f}" x2="{width - pad}" y2="{last_y:.1f}" '
            'stroke="#9bb7c6" stroke-dasharray="4 4"/>'
        )
    note = (
        f'<text x="{last_x:.1f}" y="{last_y - 8:.1f}" font-size="11" text-anchor="middle">'
        f"{sizes[-1][1]} on {sizes[-1][0]:%Y-%m-%d %H:%M} (one sample so far)</text>"
        if len(points) == 1
        else ""
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="segment size over time" '
        f'style="background:#fafafa;border:1px solid #ddd;max-width:100%">'
        f"{line}"
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="4" fill="#417690"><title>{sizes[-1][1]}</title></circle>'
        f"{note}"
        f'<text x="4" y="{pad - 8}" font-size="11">{top}</text>'
        f'<text x="4" y="{height - pad + 4}" font-size="11">0</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">{sizes[0][0]:%Y-%m-%d %H:%M}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"{sizes[-1][0]:%Y-%m-%d %H:%M}</text>"
        f"</svg>"
    )


_LIVE_JS = """
<div id="seg-live" style="margin:8px 0;padding:8px;border:1px solid #ddd;max-width:760px">
  <label>Start from an example: <select id="seg-example"><option value="">—</option></select></label>
  <div id="seg-status" style="margin-top:6px">Type a definition to check it.</div>
  <ul id="seg-errors" style="color:#ba2121"></ul>
  <ul id="seg-warnings"></ul>
  <p id="seg-summary"></p>
  <div id="seg-sample"></div>
</div>
<script>
(function () {
  var area = document.querySelector("textarea.seg-definition");
  if (!area) return;
  var live = document.getElementById("seg-live");
  area.parentNode.appendChild(live);
  var examples = %(examples)s, select = document.getElementById("seg-example");
  Object.keys(examples).forEach(function (k) {
    var o = document.createElement("option"); o.textContent = k; select.appendChild(o); });
  select.onchange = function () {
    if (select.value) { area.value = JSON.stringify(examples[select.value], null, 2); check(); } };
  var token = document.querySelector("[name=csrfmiddlewaretoken]").value, timer = null, latest = 0;
  var slug = document.querySelector("[name=slug]");
  function text(el, value) { el.textContent = value; }
  function check() {
    var status = document.getElementById("seg-status"), errs = document.getElementById("seg-errors"),
        sample = document.getElementById("seg-sample"), warns = document.getElementById("seg-warnings"),
        summary = document.getElementById("seg-summary");
    errs.innerHTML = ""; sample.innerHTML = ""; warns.innerHTML = ""; summary.textContent = "";
    var mine = ++latest;  // an older check answering late must not overwrite the newer definition's
    fetch("%(url)s", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": token},
      body: JSON.stringify({definition: area.value, slug: slug ? slug.value : ""})})
    .then(function (r) { return r.json(); }).then(function (data) {
      if (mine !== latest) return;
      var paths = Object.keys(data.errors || {});
      if (paths.length) {
        text(status, "Not valid yet:");
        paths.forEach(function (p) { data.errors[p].forEach(function (m) {
          var li = document.createElement("li"); text(li, p + ": " + m); errs.appendChild(li); }); });
        return;
      }
      Object.keys(data.warnings || {}).forEach(function (p) { data.warnings[p].forEach(function (m) {
        var li = document.createElement("li"); text(li, "⚠ " + m); warns.appendChild(li); }); });
      text(summary, data.summary || "");
      text(status, "Valid. " + data.size + " profiles match now. A sample:");
      var ul = document.createElement("ul");
      data.sample.forEach(function (m) { var li = document.createElement("li");
        text(li, (m.email || m.name || m.id) + " (last seen " + m.last_seen_at + ")"); ul.appendChild(li); });
      sample.appendChild(ul);
    }).catch(function () { if (mine === latest) text(status, "Could not check right now."); });
  }
  area.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(check, 500); });
  if (area.value.trim()) check();
})();
</script>
"""


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ["name", "slug", "kind", "status", "size", "last_refreshed_at"]
    list_filter = ["kind", "status"]
    search_fields = ["name", "slug", "description"]
    prepopulated_fields = {"slug": ["name"]}
    actions = ["refresh_now"]

    def get_readonly_fields(self, request, obj=None):
        base = ["kind", "size", "last_refreshed_at", "created_by", "created_at", "updated_at"]
        if obj is None:
            return ["live_editor"]
        extra = ["summary", "size_chart", "member_list", "live_editor"]
        if obj.kind != SegmentKind.RULE:  # accepted or dismissed through the clustering run's actions
            extra = ["status", "cluster_profile", *extra]
        return [*base, *extra]

    def get_fields(self, request, obj=None):
        fields = ["name", "slug", "description", "status"]
        if obj is None or obj.kind == SegmentKind.RULE:
            fields += ["definition", "live_editor"]
        if obj is not None:
            fields += self.get_readonly_fields(request, obj)
            fields.remove("live_editor")
            if obj.kind == SegmentKind.RULE:
                fields.insert(fields.index("definition") + 1, "live_editor")
        return list(dict.fromkeys(fields))

    def get_urls(self):
        urls = [
            path("validate/", self.admin_site.admin_view(self.validate_view), name="segments_segment_validate"),
            path("builder-catalog/", self.admin_site.admin_view(self.catalog_view), name="segments_segment_catalog"),
        ]
        return urls + super().get_urls()

    def validate_view(self, request):
        """POST {definition: text, slug}: the API's field messages, or size and sample of members."""
        if request.method != "POST":
            return JsonResponse({"errors": {"": ["POST a definition."]}}, status=405)
        try:
            body = json.loads(request.body or b"{}")
            text = body.get("definition", "")
            definition = json.loads(text) if isinstance(text, str) else text
        except (ValueError, AttributeError) as exc:
            return JsonResponse({"errors": {"definition": [f"Not valid JSON: {exc}"]}})
        slug = body.get("slug") or None
        errors = definition_errors(definition, slug=slug)
        if errors:
            return JsonResponse({"errors": errors})
        preview = services.segment_preview(definition=definition, sample=10, slug=slug)
        return JsonResponse(
            {
                "errors": {},
                "warnings": definition_warnings(definition),
                "summary": definition_summary(definition),
                "size": preview["size"],
                "sample": [{**m, "last_seen_at": m["last_seen_at"].isoformat()} for m in preview["sample"]],
            }
        )

    def catalog_view(self, request):
        """The names the builder offers: events and their properties, traits (schema registry), computed
        traits, purposes, segments, operators."""
        return JsonResponse(builder_catalog())

    @admin.display(description="Check and preview")
    def live_editor(self, obj):
        url = reverse("admin:segments_segment_validate")
        builder = format_html(
            '<div id="seg-builder" data-catalog-url="{}"></div><link rel="stylesheet" href="{}">'
            '<script src="{}"></script>',
            reverse("admin:segments_segment_catalog"),
            static("segments/builder.css"),
            static("segments/builder.js"),
        )
        return builder + mark_safe(_LIVE_JS % {"url": url, "examples": json.dumps(EXAMPLES)})  # noqa: S308

    @admin.display(description="In plain words")
    def summary(self, obj):
        if obj is None or obj.kind != SegmentKind.RULE:
            return "—"
        return definition_summary(obj.definition)

    @admin.display(description="Size over time")
    def size_chart(self, obj):
        rows = list(SegmentSize.objects.filter(segment=obj).order_by("-at").values_list("at", "size")[:500])
        return mark_safe(size_chart_svg(rows[::-1]))  # noqa: S308  (numbers and dates only)

    @admin.display(description="Members")
    def member_list(self, obj):
        members = list(selectors.segment_members(segment=obj).select_related("profile")[:50])
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td></tr>',
            (
                (
                    reverse("admin:profiles_profile_change", args=[m.profile_id]),
                    str(m.profile),
                    f"{m.entered_at:%Y-%m-%d %H:%M}",
                )
                for m in members
            ),
        )
        export = f"/api/v1/segments/{obj.slug}/members/export/"
        return format_html(
            '<p>{} members (first 50 shown). CSV of the members who granted: <a href="{}?purpose=marketing">'
            'marketing</a> · <a href="{}?purpose=personalisation">personalisation</a></p>'
            "<table><tr><th>profile</th><th>entered</th></tr>{}</table>",
            obj.size,
            export,
            export,
            rows,
        )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        who = f"admin:{request.user.get_username()}"
        if not change:
            created = services.segment_create(
                slug=data["slug"],
                name=data["name"],
                description=data.get("description", ""),
                definition=data["definition"],
                definition_text=form["definition"].data,
                created_by=who,
                refresh="now",
            )
            obj.pk = created.pk
            return
        fields = {k: data[k] for k in ("slug", "name", "description", "status") if k in data}
        if obj.kind == SegmentKind.RULE:
            fields["definition"] = data["definition"]
            fields["definition_text"] = form["definition"].data
        current = Segment.objects.get(pk=obj.pk)
        services.segment_update(segment=current, refresh="now", **fields)

    @admin.action(description="Refresh members now")
    def refresh_now(self, request, queryset):
        total_in = total_out = 0
        for segment in queryset.filter(kind=SegmentKind.RULE):
            entered, exited = services.segment_refresh(segment=segment)
            total_in, total_out = total_in + entered, total_out + exited
        self.message_user(request, f"Refreshed: {total_in} entered, {total_out} exited.", messages.SUCCESS)


# --- the profile page's segment panel ------------------------------------------------------------


def segments_panel(*, request, profile, limit: int = 50) -> PanelContent:
    """Current segments first, then the segments the person left, with when they entered and left."""
    stays = list(
        SegmentMembership.objects.filter(profile_id=profile.pk)
        .select_related("segment")
        .order_by(F("exited_at").desc(nulls_first=True), "-entered_at")[:limit]
    )
    rows = []
    for stay in stays:
        link = format_html(
            '<a href="{}">{}</a>', reverse("admin:segments_segment_change", args=[stay.segment_id]), stay.segment.name
        )
        rows.append(
            [
                link,
                stay.segment.kind,
                format_html('<b class="cdp-ok">{}</b>', "member") if stay.exited_at is None else "left",
                f"{timezone.localtime(stay.entered_at):%Y-%m-%d %H:%M}",
                f"{timezone.localtime(stay.exited_at):%Y-%m-%d %H:%M}" if stay.exited_at else "—",
            ]
        )
    current = sum(1 for s in stays if s.exited_at is None)
    return PanelContent(
        headers=["segment", "kind", "now", "entered", "left"],
        rows=rows,
        empty="In no segment, and never was."
        if not profile.merged_into_id
        else "A merged-away profile is in no segment.",
        note=f"Member of {current} segment(s) now; {len(stays) - current} earlier stay(s) shown." if stays else "",
    )


register_profile_panel(key="segments", title="Segments and their history", order=20, render=segments_panel)
