"""Three pipelines, for work that needs no agent, runnable offline (the models are scripted):

    keel run examples/pipelines.py:extraction "Invoice INV-2041 from Northwind Ltd, due 2026-12-15. Total: EUR 1,250.00"
    keel run examples/pipelines.py:digest '["Q3 sales rose 12%", "Churn fell to 2.1%", ...]'
    keel run examples/pipelines.py:router "I was charged twice for order #1005"

* ``extraction``: the fields of an invoice, validated against a pydantic model (an invalid answer is asked again
  with the validation errors);
* ``digest``: a map-reduce summary: every document summarised (8 at a time), then one summary of the summaries;
* ``router``: a classifier picks one of three fixed branches, and only that branch runs.

Every step is journaled: `keel show <run id>` lists them, and a pipeline that crashed resumes without redoing a
finished step (`keel resume <run id>`).
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, Field

from agentkeel import ModelRequest, ModelResponse, Pipeline, PipelineContext, ScriptedModel, reply


def prompt(request: ModelRequest) -> str:
    return request.messages[-1].text  # type: ignore[union-attr]


# -- typed extraction -----------------------------------------------------------------------------------------


class Invoice(BaseModel):
    number: str = Field(description="The invoice number, e.g. INV-2041")
    supplier: str
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, e.g. EUR")
    total: float
    due: str = Field(description="The due date, YYYY-MM-DD")


def read_invoice(request: ModelRequest) -> ModelResponse:
    """A scripted reader: the fields it finds by pattern (its first answer forgets the currency's ISO form)."""
    text = prompt(request).rpartition("Text:\n")[2]
    number = re.search(r"INV-\d+", text)
    supplier = re.search(r"from (.+?),", text)
    total = re.search(r"([A-Z]{3}|€) ?([\d,]+\.\d\d)", text)
    due = re.search(r"\d{4}-\d{2}-\d{2}", text)
    asked_again = "was not valid" in prompt(request)
    currency = total.group(1) if total else ""
    return reply(
        json.dumps(
            {
                "number": number.group() if number else "",
                "supplier": supplier.group(1) if supplier else "",
                "currency": currency if asked_again else currency.lower(),  # first: "eur", refused by the schema
                "total": float(total.group(2).replace(",", "")) if total else 0.0,
                "due": due.group() if due else "",
            }
        )
    )


async def extract_invoice(ctx: PipelineContext, document: str) -> dict[str, object]:
    invoice = await ctx.extract("invoice", Invoice, document)
    return invoice.model_dump()


extraction = Pipeline(name="invoice-extraction", flow=extract_invoice, model=ScriptedModel(read_invoice))


# -- map-reduce ---------------------------------------------------------------------------------------------


def summarise(request: ModelRequest) -> ModelResponse:
    text = prompt(request)
    if text.startswith("Combine"):
        points = text.count("\n- ")
        return reply(f"{points} documents read; the main points: " + "; ".join(text.split("\n- ")[1:4]) + " ...")
    return reply(text.rpartition(":\n")[2].split(".")[0].strip())


async def summary_of(ctx: PipelineContext, document: str) -> str:
    return await ctx.llm("summary", f"Summarise in one sentence:\n{document}")


async def map_reduce(ctx: PipelineContext, documents: list[str]) -> str:
    summaries = await ctx.map("documents", documents, summary_of, limit=8)
    return await ctx.llm("combined", "Combine these summaries:\n- " + "\n- ".join(summaries))


digest = Pipeline(name="digest", flow=map_reduce, model=ScriptedModel(summarise), max_parallel=8)


# -- classify and route ---------------------------------------------------------------------------------------

BRANCHES = ("billing", "shipping", "other")


def triage(request: ModelRequest) -> ModelResponse:
    text = prompt(request)
    if text.startswith("Answer with exactly one"):
        ticket = text.rpartition("Text:\n")[2].lower()
        if any(word in ticket for word in ("charged", "invoice", "refund", "payment")):
            return reply("billing")
        if any(word in ticket for word in ("deliver", "ship", "parcel", "tracking")):
            return reply("shipping")
        return reply("other")
    return reply(f"Draft reply: {text.partition(':')[2].strip()}")


async def route(ctx: PipelineContext, ticket: str) -> dict[str, str]:
    branch = await ctx.classify("branch", ticket, BRANCHES)
    if branch == "billing":
        answer = await ctx.llm("billing", f"Write a billing reply to: {ticket}")
    elif branch == "shipping":
        answer = await ctx.llm("shipping", f"Write a shipping reply to: {ticket}")
    else:
        answer = "Forwarded to a person: no automatic reply."
    return {"branch": branch, "answer": answer}


router = Pipeline(name="ticket-router", flow=route, model=ScriptedModel(triage))
