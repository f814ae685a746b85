"""A few sample emails for the local demo: a question with an attachment, a Swedish one, an
out-of-office reply (which must get no automatic reply) and a list mail."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid


def _message(sender: str, to: str, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].rstrip(">"))
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def sample_messages(support: str, customer: str) -> list[bytes]:
    question = _message(
        f"Carla Customer <{customer}>",
        support,
        "My kettle leaks",
        "Hello,\n\nthe kettle I bought last week leaks from the bottom. Photo attached.\n\nCarla\n",
    )
    question.add_attachment(
        b"\x89PNG\r\n\x1a\n" + bytes(2048), maintype="image", subtype="png", filename="kettle.png"
    )
    swedish = _message(
        f"Åsa Öberg <{customer}>",
        support,
        "Fråga om leverans",
        "Hej!\n\nNär kommer min beställning? Ordernummer 4711.\n\nMed vänliga hälsningar,\nÅsa\n",
    )
    out_of_office = _message(
        f"Carla Customer <{customer}>",
        support,
        "Automatic reply: Your order",
        "I am out of the office until Monday.\n",
        Auto_Submitted="auto-replied",
    )
    newsletter = _message(
        "Supplier News <news@supplier.example.net>",
        support,
        "Supplier newsletter, week 48",
        "This week's offers ...\n",
        List_Id="<news.supplier.example.net>",
        Precedence="list",
    )
    return [m.as_bytes() for m in (question, swedish, out_of_office, newsletter)]
