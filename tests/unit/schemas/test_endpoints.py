import pytest

from schemas.endpoints import normalise_endpoint, normalise_endpoints

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "/"),
        ("/users", "/users"),
        ("/users/42", "/users/{id}"),
        ("/users/42/", "/users/{id}"),
        ("/users/42/orders/7", "/users/{id}/orders/{id}"),
        ("/users/1/2/3", "/users/{id}/{id}/{id}"),
        ("/items/3f2c1a9e-5b7d-4c1e-9a8b-0123456789ab", "/items/{id}"),
        ("/items/3F2C1A9E-5B7D-4C1E-9A8B-0123456789AB/tags", "/items/{id}/tags"),
        ("/blobs/9f86d081884c7d65", "/blobs/{id}"),
        ("/commits/a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "/commits/{id}"),
        ("/customers/cus_9s6XKzkNRiz8i3", "/customers/{id}"),
        ("/tokens/Zm9vYmFyYmF6cXV4MTIzNDU2", "/tokens/{id}"),
        ("/reports/2024-05-01", "/reports/{id}"),
        ("/people/jane.doe@example.com", "/people/{id}"),
        ("/users/42?page=2&sort=asc", "/users/{id}"),
        ("/users/42#top", "/users/{id}"),
        ("/prices/19.99", "/prices/{id}"),
        # kept: versions, words, short hex-looking words, mixed words with dashes
        ("/v1/users", "/v1/users"),
        ("/api/v2/orders", "/api/v2/orders"),
        ("/deadbeef", "/deadbeef"),
        ("/feedback", "/feedback"),
        ("/report-2024-summary", "/report-2024-summary"),
        ("/files/report.pdf", "/files/report.pdf"),
        ("/oauth2/token", "/oauth2/token"),
    ],
)
def test_normalise_endpoint(path: str, expected: str) -> None:
    assert normalise_endpoint(path) == expected


def test_batch_form_matches_scalar_and_keeps_order() -> None:
    paths = ["/a/1", "/b", "/a/2", "/a/1", "/c/cus_9s6XKzkNRiz8i3"]
    assert normalise_endpoints(paths) == [normalise_endpoint(p) for p in paths]
    assert normalise_endpoints(paths) == ["/a/{id}", "/b", "/a/{id}", "/a/{id}", "/c/{id}"]
