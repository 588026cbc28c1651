"""Sample normalize-score Lambda: summarize with Bedrock, extract entities, classify, match watch domains, score.

Event: {"client_id": ..., "simulate": ...?}. Reads the newest non-empty ingested/{client_id}/<date>/items.json (named
in the answer as last_run_path) and canonical/scopes/*.yaml; writes s3://$DATA_BUCKET/curated/{client_id}/<that
date>/items.json. Calls Bedrock through boto3 (bedrock-runtime InvokeModel, Anthropic messages body) once per item,
with the model BEDROCK_MODEL_ID in BEDROCK_REGION; the sample asks the model for the summary only and finds entities
with the canonical scopes. Like the real one it refuses test data (paths holding "test" or "synthetic", item URLs on
example.com, test.com, fake.com) and swallows model failures: an item whose call fails is a fallback
(fallback_reason "bedrock_failure"), an empty answer leaves the item empty, and the step still answers "completed".
simulate: "bedrock_down" (every call fails with a ThrottlingException), "bedrock_empty" (every answer is empty).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import date

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from vectora_common import (
    answer,
    client_config,
    newest_non_empty,
    now,
    read_yaml,
    run_step,
    simulated,
    write_json,
)

SCOPE_FILES = ("company", "molecule", "technology", "trademark")
EVENT_KEYWORDS = {
    "regulatory": [
        "fda",
        "new drug application",
        "approval",
        "approved",
        "regulator",
        "ema",
        "label",
        "positive opinion",
    ],
    "partnership": ["agreement", "partnership", "license", "collaboration", "partner"],
    "clinical_update": ["phase 1", "phase 2", "phase 3", "clinical trial", "study", "topline", "endpoint"],
    "corporate_move": ["appoint", "chief executive", "acquisition", "manufacturing capacity", "expand"],
    "financial_results": ["interim report", "quarter results", "third quarter", "revenue", "earnings"],
}
DEFAULT_WEIGHTS = {
    "regulatory": 7,
    "partnership": 6,
    "clinical_update": 5,
    "corporate_move": 4,
    "financial_results": 3,
    "other": 2,
}
SIGNAL_WEIGHTS = {"technologies": 0.4, "companies": 0.25, "molecules": 0.2, "trademarks": 0.25}
ENTITY_KINDS = ("companies", "molecules", "technologies", "trademarks")
REFUSED_PATH_WORDS = ("test", "synthetic")
REFUSED_URL_HOSTS = ("example.com", "test.com", "fake.com")
DEFAULT_MODEL_ID = "anthropic.claude-3-sonnet-20240229-v1:0"
PROMPT = "Summarize this press release in one sentence for a newsletter on long-acting injectables.\n\n{content}"

_bedrock = None


class Model:
    """Bedrock as the real normalizer calls it: one InvokeModel per item, model and region from the environment."""

    def __init__(self, event: dict) -> None:
        global _bedrock
        if _bedrock is None:
            _bedrock = boto3.client("bedrock-runtime", region_name=os.environ.get("BEDROCK_REGION", "us-east-1"))
        self.client = _bedrock
        self.model_id = os.environ.get("BEDROCK_MODEL_ID", DEFAULT_MODEL_ID)
        self.event = event

    def summary(self, item: dict) -> str:
        """The model's one-sentence summary of item ("" for an empty answer); raises the client's error on failure."""
        if simulated(self.event, "bedrock_down"):
            error = {"Code": "ThrottlingException", "Message": "Too many requests, please wait before trying again."}
            raise ClientError({"Error": error}, "InvokeModel")
        body = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 300,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT.format(**item)}]}],
        }
        response = self.client.invoke_model(
            modelId=self.model_id, body=json.dumps(body), contentType="application/json", accept="application/json"
        )
        content = json.loads(response["body"].read()).get("content") or []
        text = "".join(part.get("text", "") for part in content if part.get("type") == "text").strip()
        return "" if simulated(self.event, "bedrock_empty") else text


class Terms:
    """A list of terms, each compiled once; finds which of them a lower-case text mentions as whole words."""

    def __init__(self, terms: list[str]) -> None:
        self.terms = [(t, t.lower(), re.compile(rf"(?<!\w){re.escape(t.lower())}(?!\w)")) for t in terms]

    def found(self, text: str) -> list[str]:
        return sorted({term for term, lower, pattern in self.terms if lower in text and pattern.search(text)})


class DomainMatcher:
    """A watch domain's scopes, compiled once for all items."""

    def __init__(self, domain: dict, scopes: dict) -> None:
        self.id = domain["id"]
        technology = scopes.get(domain.get("technology_scope"), {})
        self.negative = Terms(technology.get("negative_terms", []))
        self.kinds = {
            "companies": Terms(scopes.get(domain.get("company_scope"), [])),
            "molecules": Terms(scopes.get(domain.get("molecule_scope"), [])),
            "technologies": Terms(
                [t for key, values in technology.items() if key not in ("_metadata", "negative_terms") for t in values]
            ),
            "trademarks": Terms(scopes.get(domain.get("trademark_scope"), [])),
        }


def _scopes(bucket: str) -> dict:
    scopes: dict = {}
    for name in SCOPE_FILES:
        scopes.update(read_yaml(bucket, f"canonical/scopes/{name}_scopes.yaml") or {})
    return scopes


def _classify(text: str) -> tuple[str, float]:
    hits = {kind: sum(word in text for word in words) for kind, words in EVENT_KEYWORDS.items()}
    kind, count = max(hits.items(), key=lambda pair: pair[1])
    return (kind, min(0.5 + 0.15 * count, 0.95)) if count else ("other", 0.3)


def _process(
    item: dict, summary: str, model: Model, matchers: list[DomainMatcher], scopes: dict, config: dict, today: date
) -> dict:
    text = f"{item['title']} {item['content']}".lower()
    entities = {"companies": set(), "molecules": set(), "technologies": set(), "trademarks": set()}
    relevance, negatives = {}, []
    for matcher in matchers:
        found = {kind: terms.found(text) for kind, terms in matcher.kinds.items()}
        negatives += matcher.negative.found(text)
        for kind, values in found.items():
            entities[kind].update(values)
        score = round(min(1.0, sum(SIGNAL_WEIGHTS[k] for k, v in found.items() if v)), 2)
        relevance[matcher.id] = {
            "score": score,
            "confidence": "high" if score >= 0.6 else "medium" if score >= 0.3 else "low",
            "matched_entities": found,
        }
    event_type, confidence = _classify(text)
    min_score = config.get("matching_config", {}).get("min_domain_score", 0.25)
    matched = [d for d, r in relevance.items() if r["score"] >= min_score and not (negatives and r["score"] < 0.6)]
    weights = DEFAULT_WEIGHTS | config.get("scoring_config", {}).get("event_type_weight_overrides", {})
    base = weights.get(event_type, DEFAULT_WEIGHTS["other"])
    pure_players = {c.lower() for c in scopes.get("lai_companies_pure_players", [])}
    bonuses = {}
    if any(c.lower() in pure_players for c in entities["companies"]):
        bonuses["pure_player_company"] = 2.0
    if entities["trademarks"]:
        bonuses["trademark_mentioned"] = 1.5
    if event_type == "regulatory":
        bonuses["regulatory_event"] = 2.5
    penalties = {"negative_terms": -3.0} if negatives else {}
    factor = max((relevance[d]["score"] for d in matched), default=0.0)
    age = (today - date.fromisoformat(item["published_at"])).days
    recency = 1.0 if age <= 7 else 0.8 if age <= 21 else 0.6
    raw = base * (0.5 + factor / 2) * recency + sum(bonuses.values()) + sum(penalties.values())
    return item | {
        "normalized_at": now().isoformat(),
        "normalized_content": {
            "summary": summary,
            "entities": {k: sorted(v) for k, v in entities.items()},
            "event_classification": {"primary_type": event_type, "confidence": round(confidence, 2)},
            "anti_lai_detected": bool(negatives),
            "normalization_metadata": {"bedrock_model": model.model_id, "canonical_version": "1.0"},
        },
        "matching_results": {"matched_domains": matched, "domain_relevance": relevance},
        "scoring_results": {
            "base_score": base,
            "bonuses": bonuses,
            "penalties": penalties,
            "final_score": round(max(raw, 0.0), 1),
            "score_breakdown": {"domain_relevance_factor": factor, "recency_factor": recency},
        },
    }


def _without_model(item: dict, fallback: bool) -> dict:
    """An item as the real normalizer leaves it when Bedrock failed (fallback) or answered nothing (empty)."""
    content = {
        "summary": "",
        "entities": {kind: [] for kind in (*ENTITY_KINDS, "indications")},
        "event_classification": {"primary_type": "other", "confidence": 0.0},
    }
    if fallback:
        content["normalization_metadata"] = {
            "bedrock_model": "fallback",
            "processing_time_ms": 0,
            "fallback_reason": "bedrock_failure",
        }
    return item | {"normalized_at": now().isoformat(), "normalized_content": content}


def _refuse_test_data(path: str, items: list[dict]) -> None:
    """The real normalize refuses test data: raise ValueError on a test path or a placeholder URL."""
    for word in REFUSED_PATH_WORDS:
        if word in path.lower():
            raise ValueError(f"refusing test data: path {path} contains {word!r}")
    for item in items[:5]:
        if any(host in item.get("url", "") for host in REFUSED_URL_HOSTS):
            raise ValueError(f"refusing synthetic data: item {item.get('item_id')} has URL {item['url']}")


def lambda_handler(event, context):
    return run_step(event, _normalize)


def _normalize(event: dict) -> dict:
    started = time.monotonic()
    client_id = event["client_id"]
    data_bucket = os.environ["DATA_BUCKET"]
    config = client_config(client_id)
    found = newest_non_empty(data_bucket, f"ingested/{client_id}/", "items.json")
    if found is None:
        return answer({"client_id": client_id, "status": "error", "error": "no ingested items; run ingest first"})
    latest, items = found
    last_run_path = latest.rsplit("/", 1)[0]
    _refuse_test_data(last_run_path, items)
    when = now()
    domains = [d for d in config.get("watch_domains", []) if d.get("enabled", True)]
    scopes = _scopes(os.environ["CONFIG_BUCKET"])
    matchers = [DomainMatcher(domain, scopes) for domain in domains]
    model = Model(event)
    curated, failures = [], []
    for item in items:
        try:
            summary = model.summary(item)
        except (ClientError, BotoCoreError) as err:
            failures.append(err)
            curated.append(_without_model(item, fallback=True))
            continue
        curated.append(
            _process(item, summary, model, matchers, scopes, config, when.date())
            if summary
            else _without_model(item, fallback=False)
        )
    if failures:
        print(f"[ERROR] Bedrock call failed for {len(failures)} of {len(items)} items ({failures[0]}); using fallback")
    output_path = last_run_path.replace("ingested/", "curated/", 1) + "/items.json"
    write_json(data_bucket, output_path, curated)
    scores = [i["scoring_results"]["final_score"] for i in curated if "scoring_results" in i]
    matched = sum(1 for i in curated if (i.get("matching_results") or {}).get("matched_domains"))
    print(f"normalize-score {client_id}: {len(items)} items from {last_run_path}, {matched} matched")
    entity_counts = {k: sum(1 for i in curated if i["normalized_content"]["entities"][k]) for k in ENTITY_KINDS}
    return answer(
        {
            "client_id": client_id,
            "status": "completed",
            "last_run_path": last_run_path,
            "output_path": output_path,
            "processing_time_ms": round((time.monotonic() - started) * 1000),
            "statistics": {
                "items_input": len(items),
                "items_normalized": len(curated),
                "items_matched": matched,
                "items_scored": len(scores),
                "normalization_success_rate": 1.0 if items else 0.0,
                "matching_success_rate": round(matched / len(items), 3) if items else 0.0,
                "score_distribution": {
                    "min_score": min(scores, default=0),
                    "max_score": max(scores, default=0),
                    "avg_score": round(sum(scores) / len(scores), 2) if scores else 0,
                },
                "entity_statistics": entity_counts,
            },
            "configuration": {
                "scoring_mode": "balanced",
                "watch_domains_count": len([d for d in config.get("watch_domains", []) if d.get("enabled", True)]),
                "bedrock_matching_enabled": False,
            },
        }
    )
